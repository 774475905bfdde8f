"""Odd jobs on a live slurmctld (unit tests: tests/slurm/test_odd_jobs.py): a GPU gang array is Slurm's
(its tasks run side by side, not one at a time on the two hosts the agent pinned), a fabric comment on an
array or a het job is refused at submit, and a ``--begin`` shorter than the fallback is kept and waited for
(the agent pinned it at once with StartTime=now)."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm import open_client
from tests.slurm_integration.conftest import FALLBACK_S
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]


def test_arrays_and_het_jobs_are_slurms(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    for args, what in ((["--array=0-1"], "job array"),
                       (["--array=0-1", "-N2", "--gres=gpu:8"], "job array")):
        argv = ["sbatch", "--parsable", "--comment=fabric", "-N2", "--gres=gpu:8", *args, "--wrap", "true"]
        proc = c.run(argv, check=False)
        assert proc.returncode != 0 and f"--comment=fabric on a {what}" in proc.stderr, proc.stderr
    het = c.run(["sbatch", "--parsable", "-N2", "--gres=gpu:8", "--comment=fabric", ":", "-N1",
                 "--gres=gpu:1", "--wrap", "true"], check=False)
    assert het.returncode != 0 and "heterogeneous job" in het.stderr, het.stderr
    jid = c.sbatch("--array=0-3", "-N2", "--gres=gpu:8", wrap="sleep 60")
    deadline = time.monotonic() + 15
    while True:  # all four tasks run at once on 8 hosts (pinned, they ran one at a time on 2)
        lines = c.run(["squeue", "-h", "-r", "-j", str(jid), "-o", "%T %N %k"]).stdout.split("\n")
        rows = [ln.split(" ") for ln in lines if ln.strip()]
        if len(rows) == 4 and all(r[0] == "RUNNING" for r in rows):
            break
        assert time.monotonic() < deadline, f"{rows}\n{agent.log()}"
        time.sleep(0.2)
    assert len({r[1] for r in rows}) == 4 and not any(r[2].startswith("fabric") for r in rows), rows
    het_id = c.sbatch("-N1", "--gres=gpu:1", ":", "-N1", "--gres=gpu:1", wrap="sleep 30")
    cli = open_client("cli", env=c.env)  # squeue --json (REST decodes the same fields), scontrol text
    jobs = cli.jobs()
    assert sorted(j.grouped or "" for j in jobs if j.array_job_id == jid) == ["array"] * 4, jobs
    assert {j.grouped for j in jobs if j.het_job_id == het_id} == {"het"}, jobs
    assert cli.job(jid).grouped == "array" and cli.job(het_id).grouped == "het"
    events = read_json_lines(agent.state_dir / "decisions.jsonl")
    assert not [e for e in events if e.get("event") == "agent.place" and e.get("job", 0) >= jid], events[-5:]


def test_a_users_begin_shorter_than_the_fallback_is_waited_for(fabric_cluster, agent):
    c = fabric_cluster
    agent.start()
    wait = FALLBACK_S - 4
    submitted = time.time()
    jid = c.sbatch(f"--begin=now+{wait}", "-N2", "--gres=gpu:8", wrap="sleep 60")
    info = c.job(jid)
    assert info["Comment"] == "fabric", info
    info = c.wait_job(jid, states=("RUNNING",), timeout=wait + 12)
    [place] = _decisions(agent, "agent.place", jid)
    assert place["ts"] >= int(submitted) + wait, (place, submitted)  # not before the user's time
    _until(lambda: any(e.get("jobs", {}).get(str(jid)) == "BeginTime"
                       for e in read_json_lines(agent.state_dir / "decisions.jsonl")
                       if e.get("event") == "agent.waiting"), "no BeginTime waiting record", agent, timeout=2)
