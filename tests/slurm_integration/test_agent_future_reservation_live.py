"""A reservation that has not started yet, on a live cluster (the unit tests:
tests/slurm/test_future_reservations.py). With n1-n14 reserved from an hour ahead
(``Flags=MAINT,IGNORE_JOBS``, as admins book a maintenance), a 2-hour gang is placed on n15-n16 and starts; a
10-minute gang, which ends before the reservation starts, is placed on n1-n14 and starts; a second 2-hour gang
is not pinned onto the reservation's nodes, and ``fabric slurm why`` says so. Before, the agent read active
reservations only and pinned the long gangs anywhere: Slurm then kept them waiting (ReqNodeNotAvail/Reserved)
until after the maintenance."""

from __future__ import annotations

import contextlib
import time

import pytest

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.why import explain
from tests.slurm_integration.test_agent_held_live import _decisions

pytestmark = [pytest.mark.slurm]
SOON = {f"n{i}" for i in range(1, 15)}
NAME = "fabmaint"


@contextlib.contextmanager
def _reservation_ahead(c):
    c.run(["scontrol", "create", "reservation", f"ReservationName={NAME}", "StartTime=now+3600",
           "Duration=60", "Nodes=n[1-14]", "Users=root", "Flags=MAINT,IGNORE_JOBS"])
    try:
        yield
    finally:  # the cluster is shared by the session: no reservation may outlive the test
        c.run(["scancel", "--user", "root"], check=False)
        deadline = time.monotonic() + 30
        while c.run(["scontrol", "delete", f"ReservationName={NAME}"], check=False).returncode != 0:
            assert time.monotonic() < deadline, f"reservation {NAME} could not be deleted"
            time.sleep(0.3)


def _gang(c, minutes: int) -> int:
    return c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", f"--time={minutes}", wrap="sleep 300")


def test_gangs_that_would_run_into_a_reservation_to_come_go_elsewhere(fabric_cluster, agent):
    c = fabric_cluster
    with _reservation_ahead(c):
        client = CliClient(c.env)
        found, ignored = client.reservations()
        assert client._resv_text == (c.version < (23, 2, 0))  # 22.05's scontrol has no --json
        [r] = [r for r in found if r.name == NAME]
        assert set(r.nodes) == SOON and "MAINT" in r.flags and not ignored, (found, ignored)
        assert 3000 < r.start - time.time() < 3700 and r.end - r.start == 3600, r
        agent.start()
        long = _gang(c, 120)
        info = c.wait_job(long, states=("RUNNING",), timeout=30)
        assert set(expand(info["NodeList"])) == {"n15", "n16"}, info
        [place] = _decisions(agent, "agent.place", long)
        assert set(place["hosts"]) == {"n15", "n16"}, place
        short = _gang(c, 10)  # ends before the reservation starts: its nodes are fine
        info = c.wait_job(short, states=("RUNNING",), timeout=30)
        assert set(expand(info["NodeList"])) <= SOON, info
        assert _decisions(agent, "agent.place", short), agent.log()
        waits = _gang(c, 120)  # only the reservation's nodes are free: it waits, unpinned
        agent.wait_cycles(agent.cycles() + 4)
        info = c.wait_job(waits, states=("PENDING",), timeout=5)
        assert not _decisions(agent, "agent.place", waits) and info["ReqNodeList"] in ("", "(null)"), info
        text = explain(CliClient(c.env), waits, state_dir=agent.state_dir)["text"]
        assert f"keeps it off n[1-14]: reservation {NAME} starts there at" in text, text
        assert "before its time limit (120 min) would end" in text, text
