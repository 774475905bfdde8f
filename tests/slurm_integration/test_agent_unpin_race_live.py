"""The agent clears a pin (``agent.unpin``: a withdrawn spot pin, a job held or dependent since) from the
cycle's view; Slurm may start the job on its pinned hosts meanwhile. Clearing ``ReqNodeList`` of a
*running* job is a resize to no nodes, which Slurm refuses with "Invalid node name specified" (25.11 and
22.05, job_mgr.c ``_update_job``). That race is expected: no ``agent.failed`` record; a refusal of a job
still pending is still one."""

from __future__ import annotations

import pytest

from fabric_hpc.hostlist import compress
from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.actions import Actions

pytestmark = [pytest.mark.slurm]


def _actions(cluster) -> tuple[Actions, list[tuple[str, dict]]]:
    notes: list[tuple[str, dict]] = []
    return Actions(open_client("cli", env=cluster.env), lambda what, **kw: notes.append((what, kw))), notes


def test_unpin_of_a_job_slurm_started_meanwhile_is_no_failure(fabric_cluster, slurm_fabric):
    c = fabric_cluster
    pin = compress(list(slurm_fabric.hosts[:2]))
    jid = c.sbatch("-N2", "--gres=gpu:8", "--comment=nofabric", f"--nodelist={pin}", wrap="sleep 300")
    try:
        c.wait_job(jid, states=("RUNNING",), timeout=30)  # started on its pin after the view was read
        actions, notes = _actions(c)
        actions.apply([], [], {}, [], 60, unpin=[jid])
        assert notes == [], notes
        assert actions.failed_total == 0
        assert jid not in actions.deferrals  # not deferred: it runs
        assert c.job(jid)["JobState"] == "RUNNING"
    finally:
        c.run(["scancel", str(jid)], check=False)


def test_unpin_refused_for_a_pending_job_is_still_a_failure(fabric_cluster):
    c = fabric_cluster
    c.run(["scontrol", "create", "PartitionName=race", "Nodes=ALL"])
    jid = None
    try:
        jid = c.sbatch("-p", "race", "-N2", "--gres=gpu:8", "--comment=nofabric", "--begin=now+600",
                       wrap="sleep 300")
        # Slurm refuses a begin time for a job of an INACTIVE partition (22.05, 25.11)
        c.run(["scontrol", "update", "PartitionName=race", "State=INACTIVE"])
        actions, notes = _actions(c)
        actions.apply([], [], {}, [], 60, unpin=[jid])
        assert c.job(jid)["JobState"] == "PENDING"
        assert [n for n, _ in notes] == ["failed"], notes
        assert notes[0][1]["action"] == "unpin" and notes[0][1]["job"] == jid
    finally:
        if jid is not None:
            c.run(["scancel", str(jid)], check=False)
        c.run(["scontrol", "delete", "PartitionName=race"], check=False)
