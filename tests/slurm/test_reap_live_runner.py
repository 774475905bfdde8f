"""Two test runners side by side (pytest-xdist workers): one runner's ``reap_orphans()`` must not kill
the processes of a cluster whose runner is alive, even at a moment without its slurmctld and munged
(before munged starts, while the cluster stops). A dead runner's leftovers are still orphans."""

from __future__ import annotations

import os
import shutil
import subprocess

from fabric_hpc.testing._processes import orphans
from fabric_hpc.testing.slurm_cluster import CONF_MARKER, SlurmTestCluster


def test_a_live_runners_job_process_is_no_orphan_and_a_dead_runners_is(tmp_path):
    cluster = SlurmTestCluster(nodes=1, gpus_per_node=0, base_dir=tmp_path / "cluster")
    conf = cluster.write_config()
    env = {**os.environ, "SLURM_CONF": str(conf), "SLURM_JOB_ID": "1"}  # a job step of it, no daemons
    step = subprocess.Popen(["sleep", "60"], env=env)
    try:
        assert conf.read_text().startswith(f"{CONF_MARKER} (runner pid {os.getpid()})\n")
        assert step.pid not in orphans(CONF_MARKER)  # this runner is alive: not another one's to reap
        gone = subprocess.Popen(["true"])
        gone.wait()  # a runner that died (its pid reaped)
        text = conf.read_text().replace(f"(runner pid {os.getpid()})", f"(runner pid {gone.pid})", 1)
        conf.write_text(text)
        assert step.pid in orphans(CONF_MARKER)
    finally:
        step.kill()
        step.wait()
        if cluster.munge_dir is not None:
            shutil.rmtree(cluster.munge_dir, ignore_errors=True)
