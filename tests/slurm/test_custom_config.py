"""A cluster with its own slurm.conf: the hooks later issues need (job_submit Lua, Prolog, jobcomp)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slurm

LUA = """
function slurm_job_submit(job_desc, part_list, submit_uid)
   job_desc.comment = "seen-by-lua"
   return slurm.SUCCESS
end
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end
return slurm.SUCCESS
"""


def test_lua_prolog_and_jobcomp_files_are_used(slurm_cluster_factory):
    cluster = slurm_cluster_factory(
        nodes=2, gpus_per_node=1, cpus_per_node=2,
        settings={"JobSubmitPlugins": "lua", "JobCompType": "jobcomp/filetxt",
                  "JobCompLoc": "{log_dir}/jobcomp.txt", "Prolog": "{etc_dir}/prolog.sh"},
        config_files={"job_submit.lua": LUA,
                      "prolog.sh": "#!/bin/sh\necho prolog $SLURM_JOB_ID >> {log_dir}/prolog.txt\n"},
        extra_conf="PartitionName=batch Nodes=n2 State=UP",
    )
    job = cluster.sbatch("-p", "batch", wrap="true")
    info = cluster.wait_job(job)
    assert info["Comment"] == "seen-by-lua"  # job_submit.lua ran
    assert (info["Partition"], info["NodeList"]) == ("batch", "n2")  # extra partition
    assert (cluster.log_dir / "prolog.txt").read_text().split() == ["prolog", str(job)]
    jobcomp = cluster.log_dir / "jobcomp.txt"
    deadline = time.monotonic() + 10
    while f"JobId={job} " not in (jobcomp.read_text() if jobcomp.exists() else ""):
        assert time.monotonic() < deadline, "no jobcomp/filetxt record"
        time.sleep(0.1)
    assert "JobState=COMPLETED" in jobcomp.read_text()
