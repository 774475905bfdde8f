"""The fairshare ledger forgets accounts whose usage has decayed to nothing (``PRUNE_BELOW_GPU_S``), in
the simulator and in the agent's ``usage.json`` alike (one piece of code: ``UsageLedger.advance``), so many
short-lived accounts do not grow it without bound."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.placement import Request
from fabric_hpc.scheduler import Backfill, Job, MultifactorPriority, Scheduler, SolverPlacer, UsageLedger
from fabric_hpc.scheduler.priority import PRUNE_BELOW_GPU_S
from fabric_hpc.sim import Simulator
from fabric_hpc.slurm.usage import FILE, AgentUsage
from tests.scheduler.helpers import fabric

HALF = 60.0


def test_a_decayed_account_is_forgotten_and_a_holding_one_kept():
    ledger = UsageLedger(HALF)
    ledger.advance(0.0, {})
    ledger.advance(10.0, {"old": 8, "busy": 1})             # old: ~80 GPU-s
    ledger.advance(20.0, {"busy": 1})
    assert set(ledger.usage()) == {"old", "busy"}
    ledger.advance(20.0 + 30 * HALF, {"busy": 1})          # 80 / 2^30 < PRUNE_BELOW_GPU_S
    assert set(ledger.usage()) == {"busy"}
    ledger.advance(20.0 + 80 * HALF, {"idle-but-held": 0, "busy": 1})
    assert ledger.usage()["busy"] > PRUNE_BELOW_GPU_S      # charged every interval: never dropped
    ledger.advance(20.0 + 81 * HALF, {})
    ledger.advance(20.0 + 200 * HALF, {})
    assert ledger.usage() == {}


def test_a_tiny_usage_that_has_not_decayed_yet_is_kept():
    ledger = UsageLedger(HALF)
    ledger.advance(0.0, {})
    ledger.advance(0.004, {"a": 1})                         # 4 ms of one GPU: above the threshold
    ledger.advance(0.004 + HALF, {})                        # halved: 2 ms, still above it: kept
    assert "a" in ledger.usage()


def test_agent_usage_json_keeps_only_recent_accounts(tmp_path):
    usage = AgentUsage(tmp_path, half_life_s=HALF)
    t = 1000.0
    usage.charge(t, {})
    for i in range(300):                                    # a short-lived account every 10 minutes
        t += 600.0
        usage.charge(t, {f"proj{i:03d}": 8})
    kept = json.loads((tmp_path / FILE).read_text())["ledger"]["usage"]
    assert "proj298" in kept and "proj000" not in kept       # proj299 is charged at the next cycle
    assert len(kept) < 10                                   # 300 accounts seen, only the last few hours kept
    assert set(AgentUsage(tmp_path, half_life_s=HALF).ledger.usage()) == set(kept)  # a restart reads the same


def test_the_simulator_ledger_forgets_short_lived_accounts():
    fab = fabric(2, 2, gpus=4)
    jobs = [Job(id=f"j{i:03d}", request=Request(nodes=1, gpus_per_node=1), submit=i * 3600.0, walltime=60.0,
                duration=60.0, account=f"acct{i:03d}") for i in range(100)]
    pol = Scheduler("fs", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(20))
    sim = Simulator(fab, pol, jobs, half_life_s=HALF)
    sim.run()
    kept = sim.ledger.usage()
    assert "acct099" in kept and len(kept) <= 2, sorted(kept)
    assert all(v >= PRUNE_BELOW_GPU_S for v in kept.values())


@pytest.mark.parametrize("gpus", [0, 1])
def test_pruning_does_not_depend_on_how_often_advance_is_called(gpus):
    one, many = UsageLedger(HALF), UsageLedger(HALF)
    for ledger in (one, many):
        ledger.advance(0.0, {"a": 4})
        ledger.advance(100.0, {"b": gpus} if gpus else {})
    one.advance(100.0 + 40 * HALF, {"b": gpus} if gpus else {})
    for k in range(1, 401):
        many.advance(100.0 + k * HALF / 10, {"b": gpus} if gpus else {})
    assert set(one.usage()) == set(many.usage())
    for acct, v in one.usage().items():
        assert many.usage()[acct] == pytest.approx(v, rel=1e-9)
