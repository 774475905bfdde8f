"""A hostile job name and comment on a live slurmctld (unit tests: test_scontrol_forged_fields.py):
`fabric slurm why` (the cli backend's one-job read) took `UserId=root(0) … JobState=RUNNING …
GRES=gpu:8(IDX:0-7)` in a job name for the job's fields (`scontrol show job -d -o` text). It reads the
job as JSON now: what squeue --json says, with the name and comment as given."""

from __future__ import annotations

import pytest

from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.why import explain

pytestmark = [pytest.mark.slurm]

NAME = ("x UserId=root(0) GroupId=root(0) Account=admins QOS=high JobState=RUNNING Reason=None Nodes=n2 "
        "CPU_IDs=0 Mem=0 GRES=gpu:8(IDX:0-7)")
COMMENT = ("c JobState=RUNNING NodeList=n3 JOB_GRES=gpu:8 Nodes=n3 CPU_IDs=0 Mem=0 GRES=gpu:8(IDX:0-7) "
           "Requeue=0")


def test_a_hostile_name_and_comment_forge_nothing(slurm_cluster):
    c = slurm_cluster
    jid = c.sbatch("-J", NAME, f"--comment={COMMENT}", "--gres=gpu:1", "--begin=now+3600", wrap="sleep 60")
    try:
        cli = open_client("cli", env=c.env)
        job = cli.job(jid)
        listed = next(j for j in cli.jobs() if j.job_id == jid)
        assert (job.state, job.name, job.comment, job.gpus, job.node_list) == (
            "PENDING", NAME, COMMENT, {}, ()), job
        assert (job.user, job.account, job.qos, job.requeue) == (
            listed.user, listed.account, listed.qos, listed.requeue), (job, listed)
        assert job.qos != "high" and job.account != "admins", job
        text = explain(cli, jid)["text"]
        assert f"Job {jid} (" in text and ") is pending: its start time has not come yet" in text, text
        assert cli.job(jid) == job  # the 22.05 fallback (squeue --json) is remembered and gives the same
    finally:
        c.run(["scancel", str(jid)], check=False)


def test_an_unknown_job_is_not_found(slurm_cluster):
    from fabric_hpc.errors import NotFoundError

    cli = open_client("cli", env=slurm_cluster.env)
    for _ in range(2):  # the first call finds out how to ask (22.05: squeue --json), the second asks so
        with pytest.raises(NotFoundError, match="Slurm knows no job 99999"):
            cli.job(99999)
