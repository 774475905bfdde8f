"""The jobcomp/filetxt reader on a log written by the live Slurm test cluster, replayed by the simulator."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Simulator, load_trace, read_jobcomp, summarize

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def jobcomp_cluster(slurm_cluster_factory, slurm_fabric):
    return slurm_cluster_factory(slurm_fabric, settings={"JobCompType": "jobcomp/filetxt",
                                                         "JobCompLoc": "{log_dir}/jobcomp.log"},
                                 extra_conf="PartitionName=spot Nodes=ALL State=UP")


def test_jobcomp_log_from_live_cluster_replays(jobcomp_cluster, slurm_fabric):
    c = jobcomp_cluster
    ids = [c.sbatch("-N2", "--gpus-per-node=8", "-t", "5", "-A", "llm", wrap="sleep 2"),
           c.sbatch("-N1", "--gpus-per-node=2", "-t", "1-00:00:00", "-A", "vision", "-p", "spot", wrap="sleep 1"),
           c.sbatch("-N4", "--gpus-per-node=8", "-t", "10", wrap="true")]
    for jid in ids:
        c.wait_job(jid, timeout=60)
    log = c.log_dir / "jobcomp.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    trace = read_jobcomp(log, gpus_per_node=8)
    assert load_trace(str(log)).name == trace.name  # recognised by its first line
    by = {j.id: j for j in trace}
    assert set(by) == {f"slurm{i}" for i in ids}
    a, b, d = (by[f"slurm{i}"] for i in ids)
    assert (a.request.nodes, a.gpus, a.walltime, a.account) == (2, 16, 300, "llm")
    assert (b.walltime, b.account, b.tier) == (86400, "vision", "spot")
    assert d.request.nodes == 4 and d.gpus == 32
    assert a.duration >= 2 and min(j.submit for j in trace) == 0
    for policy in (slurm_policy(), fabric_policy()):
        s = summarize(Simulator(slurm_fabric, policy, trace).run())
        assert s["finished"] == 3 and s["unfinished"] == 0
