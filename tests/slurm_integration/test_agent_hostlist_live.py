"""The documented ``;`` host-list form on a live Slurm: ``--comment=fabric:exclude=n[9-15];n1`` is read
by the agent as one option (before: "unknown key 'n1'", handed to Slurm without its options, which ran
it on n[9-10]), and Slurm itself keeps the job off those hosts (job_submit.lua adds them to its -x),
also when the agent is down."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.conftest import FALLBACK_S
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]
EXCLUDED = {"n1", *(f"n{i}" for i in range(9, 16))}
COMMENT = "--comment=fabric:exclude=n[9-15];n1"


def _busy(c) -> int:
    """n[2-8] and n16 busy: the job's only allowed hosts."""
    jid = c.sbatch("-N8", "-w", "n[2-8],n16", "--gres=gpu:8", "--comment=nofabric", wrap="sleep 300")
    c.wait_job(jid, states=("RUNNING",), timeout=30)
    return jid


def _eligible_since(info: dict) -> float:
    """Seconds since the job's EligibleTime (its begin time, local time); negative before it, or unknown."""
    if info["EligibleTime"] in ("Unknown", "None", ""):
        return -1.0
    return time.time() - datetime.fromisoformat(info["EligibleTime"]).timestamp()


def test_an_excluded_host_list_with_semicolons_is_honoured(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    busy = _busy(c)
    jid = c.sbatch("-N2", "--gres=gpu:8", COMMENT, wrap="sleep 300")
    agent.wait_cycles(agent.cycles() + 6)
    info = c.job(jid)
    assert info["JobState"] == "PENDING", info  # before: RUNNING on n[9-10]
    assert set(expand(info["ExcNodeList"])) == EXCLUDED, info
    assert not _decisions(agent, "agent.handoff", jid), agent.log()
    c.run(["scancel", str(busy)])
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert not set(expand(info["NodeList"])) & EXCLUDED
    placed = _decisions(agent, "agent.place", jid)
    assert placed and set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), agent.log()


def test_slurm_keeps_the_exclusion_without_the_agent(fabric_cluster, agent):
    c = fabric_cluster
    busy = _busy(c)
    jid = c.sbatch("-N2", "--gres=gpu:8", COMMENT, wrap="sleep 300")  # the agent is not running
    # any deferral has run out (its EligibleTime, at most FALLBACK_S after the submission, has passed):
    # Slurm's own scheduler has the job. Before: a fixed FALLBACK_S + 3 s.
    _until(lambda: _eligible_since(c.job(jid)) >= 1, "the job's deferral did not run out", agent,
           timeout=FALLBACK_S + 10)
    info = c.job(jid)
    assert info["JobState"] == "PENDING" and set(expand(info["ExcNodeList"])) == EXCLUDED, info
    c.run(["scancel", str(busy)])
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    assert not set(expand(info["NodeList"])) & EXCLUDED


def _submit_held(c, *how: str) -> tuple[bool, str | None]:
    """(refused with "Invalid node name", the accepted job's ExcNodeList); the accepted job is cancelled."""
    out = c.run(["sbatch", "-H", "-N2", "--gres=gpu:8", *how, "--wrap", "true"], check=False)
    if out.returncode != 0:
        assert "Invalid node name" in out.stderr, (how, out.stderr)
        return True, None
    jid = int(out.stdout.split()[-1])
    excluded = c.job(jid)["ExcNodeList"]
    c.run(["scancel", str(jid)])
    return False, excluded


def test_an_unknown_excluded_host_fails_the_submission_as_x_does(fabric_cluster):
    """The comment's hosts reach Slurm as -x nosuch1,n2 (job_submit.lua), so the answer is that -x's: 22.05
    and 25.11 refuse it; 24.11 (Debian 13) refuses -x nosuch1 and -x n2,nosuch1 but accepts -x nosuch1,n2,
    keeping n2,nosuch1 excluded (checked on 24.11.5)."""
    c = fabric_cluster
    assert _submit_held(c, "-x", "nosuch1") == (True, None)
    as_x = _submit_held(c, "-x", "nosuch1,n2")
    assert _submit_held(c, "--comment=fabric:exclude=nosuch1;n2") == as_x
    assert as_x == ((False, "n2,nosuch1") if c.version[:2] == (24, 11) else (True, None))
