"""The simulator's accounting (issue 17): never-fit jobs, walltime kills and bounded slowdown."""

from __future__ import annotations

import json

from fabric_hpc.cli.main import main
from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SolverPlacer
from fabric_hpc.sim import Simulator, summarize
from fabric_hpc.sim.metrics import job_rows
from tests.scheduler.helpers import fabric, job


def _fifo() -> Scheduler:
    prio = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    return Scheduler("fifo", prio, SolverPlacer("greedy"), Backfill.easy())


class _Double:
    """Every multi-GPU placement runs twice as long as its ideal run time."""

    def start(self, job_id, job, gpus) -> dict[str, float]:  # noqa: ARG002
        return {job_id: 2.0}

    def end(self, job_id) -> dict[str, float]:  # noqa: ARG002
        return {}


def test_jobs_that_never_fit_are_rejected_with_a_reason():
    fab = fabric(2, 2)  # 2 hosts x 8 GPUs
    jobs = [job("ok", 1, wall=100), job("wide", 1, gpn=16, wall=100), job("many", 3, wall=100)]
    res = Simulator(fab, _fifo(), jobs).run()
    s = summarize(res)
    assert s["rejected"] == 2 and s["finished"] == 1 and s["unfinished"] == 0
    assert s["rejected_reasons"] == {"needs 16 GPUs per host, the largest host has 8": 1,
                                     "needs 24 GPUs, the fabric has 16": 1}
    assert {r["id"]: r.get("reason") for r in job_rows(res)}["ok"] is None
    assert "can never fit" in s["note"]


def test_walltime_kills_are_not_in_jct():
    fab = fabric(2, 2)
    jobs = [job("done", 2, wall=100, dur=100), job("killed", 2, submit=0, wall=60, dur=1000)]
    s = summarize(Simulator(fab, _fifo(), jobs).run())
    # "done" runs 0 -> 100, "killed" 100 -> 160 (its limit): counting it would make the mean 130
    assert s["finished"] == 1 and s["timeouts"] == 1
    assert s["mean_jct_s"] == 100
    assert s["timeout_gpu_hours"] == 16 * 60 / 3600


def test_bounded_slowdown_uses_the_unstretched_run_time():
    fab = fabric(2, 2)
    jobs = [job("g", 2, wall=1000, dur=100)]  # stretched x2: runs 200 s for 100 s of work
    s = summarize(Simulator(fab, _fifo(), jobs, slowdown=_Double()).run())
    assert s["mean_jct_s"] == 200
    assert s["mean_bounded_slowdown"] == 2.0  # JCT / ideal; dividing by the 200 s run would say 1.0


def test_cli_counts_misfits_or_refuses_them_with_strict(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
                     "0,8,0,1,vgg,100,1\n1,2,0,1,vgg,100,1\n")
    argv = ["sim", "run", "--trace", f"tiresias:{trace}", "-t", "nvl72:racks=1", "--gpus-per-host", "8",
            "--out", str(tmp_path / "o"), "--no-progress", "--no-topology-report", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr()
    s = json.loads(out.out)
    assert s["rejected"] == 1 and s["finished"] == 1 and "never fit" in out.err
    assert main(argv + ["--strict"]) == 3
    assert "never fit" in capsys.readouterr().err
    # the fabric's own host size (4 GPUs on NVL72) is the default: the 8-GPU job becomes 2 x 4
    assert main(argv[:6] + argv[8:]) == 0
    assert json.loads(capsys.readouterr().out)["rejected"] == 0
