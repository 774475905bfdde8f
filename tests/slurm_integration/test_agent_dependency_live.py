"""Gangs waiting on a dependency on a live Slurm (``sbatch --dependency=afterok:N`` while N runs): the agent
neither pins them nor keeps GPUs for them, so a later gang starts on the free hosts; once the dependency is
satisfied the agent places the job (its deferral was kept up meanwhile); a pin set before is cleared.

Slurm resets a pending job's reason to ``None`` on any update (the agent's deferral too) until its next
scheduling pass, so the agent also reads the dependency text (``Job.dependent``); these tests run the
agent long enough for several renewals.
"""

from __future__ import annotations

import time

import pytest

from fabric_hpc.hostlist import compress, expand
from tests.slurm_integration.conftest import FALLBACK_S
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]


def _waits(info: dict) -> bool:
    return info["JobState"] == "PENDING" and info["Dependency"] not in ("(null)", "")


def test_a_dependent_gang_holds_nothing_and_is_placed_once_its_dependency_ends(fabric_cluster, agent,
                                                                                 tmp_path):
    c = fabric_cluster
    agent.extra = ("--compact-wait", "0")
    agent.start()
    stop = tmp_path / "stop"
    first = c.sbatch("-N12", "--gres=gpu:8", "--comment=fabric",
                     wrap=f"while [ ! -e {stop} ]; do sleep 0.2; done")
    busy = set(expand(c.wait_job(first, states=("RUNNING",), timeout=30)["NodeList"]))
    dependent = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", f"--dependency=afterok:{first}",
                         wrap="sleep 300")
    submitted = time.monotonic()
    agent.wait_cycles(agent.cycles() + 3)  # seen by the agent (before: pinned to 2 of the 4 free hosts)
    later = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
    info = c.wait_job(later, states=("RUNNING",), timeout=30)
    taken = set(expand(info["NodeList"]))
    assert not taken & busy
    placed = _decisions(agent, "agent.place", later)
    assert placed and set(placed[-1]["hosts"]) == taken, agent.log()
    # 2 hosts stay free past two renewals of the deferral: each renewal resets Slurm's reason to None for
    # a second or more (until its next scheduling pass), and an agent reading only the reason pins the job
    # there. A renewal moves the job's EligibleTime (its begin time) on; after the second one seen, 2 s
    # (4 agent cycles) more. Before: a fixed 2 x FALLBACK_S (16 s) from the submission.
    begins: list[str] = []
    calm_until = None
    while calm_until is None or time.monotonic() < calm_until:
        assert time.monotonic() < submitted + 3 * FALLBACK_S, f"renewals seen: {begins}\n{agent.log()}"
        state = c.job(dependent)
        assert _waits(state) and state["ReqNodeList"] in ("(null)", ""), state
        if state["EligibleTime"] not in ("Unknown", *begins):
            begins.append(state["EligibleTime"])
            if len(begins) == 3:  # the begin time it had when first seen, then two renewals
                calm_until = time.monotonic() + 2.0
        time.sleep(0.2)
    assert not _decisions(agent, "agent.place", dependent) and not _decisions(agent, "agent.unpin", dependent)
    stop.touch()  # the first job ends well: afterok is satisfied
    c.wait_job(first, states=("COMPLETED",), timeout=30)
    info = c.wait_job(dependent, states=("RUNNING",), timeout=30)
    placed = _decisions(agent, "agent.place", dependent)
    assert placed and set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), agent.log()
    assert not set(expand(info["NodeList"])) & taken


def test_a_pinned_gang_given_a_dependency_is_unpinned(fabric_cluster, agent, slurm_fabric):
    c = fabric_cluster
    first = c.sbatch("-H", "-N1", "--gres=gpu:8", "--comment=fabric", wrap="true")  # held: it does not end
    jid = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", f"--dependency=afterok:{first}",
                   wrap="sleep 300")
    pin = compress(list(slurm_fabric.hosts[:2]))
    c.run(["scontrol", "update", f"JobId={jid}", f"ReqNodeList={pin}"])  # the pin the agent set before
    assert c.job(jid)["ReqNodeList"] not in ("(null)", "")
    agent.remember_pin(jid, pin)
    agent.start()
    _until(lambda: c.job(jid)["ReqNodeList"] in ("(null)", ""), "the dependent job's pin was not cleared",
           agent)
    assert _waits(c.job(jid)), c.job(jid)
    assert [e["reason"] for e in _decisions(agent, "agent.unpin", jid)][:1] == ["dependency"]
    c.run(["scontrol", "release", str(first)])  # it runs `true` and ends well: the dependency is satisfied
    info = c.wait_job(jid, states=("RUNNING",), timeout=30)
    placed = _decisions(agent, "agent.place", jid)
    assert placed and set(placed[-1]["hosts"]) == set(expand(info["NodeList"])), agent.log()
