"""Jobs that tie on priority and submit time go in natural id order (9 before 10, 500_2 before
500_10), not text order: in the scheduler, the simulator and the readers' ``limit``."""

from __future__ import annotations

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SchedulerInput, SolverPlacer
from fabric_hpc.scheduler.idorder import id_key, sort_by_time_then_id
from fabric_hpc.sim import Simulator, load_trace, read_sacct, read_swf, read_tiresias
from tests.scheduler.helpers import fabric, job, pend

SACCT = "JobID|Submit|Start|End|Timelimit|NNodes|AllocTRES|Account|User|Partition|QOS|State\n"


def _sacct_row(jid: str) -> str:
    return (f"{jid}|2026-10-01T00:00:00|2026-10-01T00:00:00|2026-10-01T00:01:40|00:03:20|1|gres/gpu=4,node=1"
            "|a|u|gpu|normal|COMPLETED\n")


def _fifo() -> Scheduler:
    prio = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    return Scheduler("fifo", prio, SolverPlacer("greedy"), Backfill.easy())


def test_id_key_orders_numbers_as_numbers():
    ids = ["t10", "500_10", "10", "t9", "500_2", "9", "1", "01", "500_1", "b10x", "b2"]
    assert sorted(ids, key=id_key) == ["01", "1", "9", "10", "500_1", "500_2", "500_10", "b2", "b10x", "t9",
                                       "t10"]
    assert id_key("9" * 5000) < id_key("1" + "0" * 5000)  # a run of any length, no int conversion


def test_sort_by_time_then_id_breaks_only_ties():
    rows = [(1.0, "t10"), (0.0, "t10"), (0.0, "t9"), (1.0, "t9"), (0.5, "t100")]
    sort_by_time_then_id(rows, lambda r: r[0], lambda r: r[1])
    assert rows == [(0.0, "t9"), (0.0, "t10"), (0.5, "t100"), (1.0, "t9"), (1.0, "t10")]


def test_scheduler_starts_job_9_before_job_10():
    st = ClusterState(fabric(1, 1))  # one 8-GPU host: one of the two jobs starts
    out = _fifo().schedule(SchedulerInput(10, pend(job("10", 1), job("9", 1)), [], st))
    assert [j.id for j, _ in out.start] == ["9"]


def test_simulator_runs_array_task_2_before_10():
    jobs = [job(f"500_{i}", 1, wall=100) for i in (10, 2, 1)]
    res = Simulator(fabric(1, 1), _fifo(), jobs).run()
    starts = sorted((r.first_start, r.job.id) for r in res.records)
    assert [jid for _, jid in starts] == ["500_1", "500_2", "500_10"]


def test_limit_keeps_job_9_not_job_10(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("job_id,num_gpu,submit_time,duration\n9,4,0,100\n10,4,0,100\n")
    assert [j.id for j in load_trace(f"tiresias:{p}", limit=1)] == ["t9"]
    assert [j.id for j in read_tiresias(p)] == ["t9", "t10"]


def test_limit_keeps_the_first_array_tasks(tmp_path):
    p = tmp_path / "arr.txt"
    p.write_text(SACCT + "".join(_sacct_row(f"500_{i}") for i in range(1, 13)))
    assert [j.id for j in read_sacct(p, limit=3)] == ["slurm500_1", "slurm500_2", "slurm500_3"]
    assert [j.id for j in read_sacct(p)][-3:] == ["slurm500_10", "slurm500_11", "slurm500_12"]


def test_limit_prunes_in_natural_order(tmp_path):
    # more rows than Keep holds before pruning (2 * limit + 1024), all at one submit time
    p = tmp_path / "many.swf"
    p.write_text("".join(f"{i} 0 -1 60 8 -1 -1 8 120 -1 1 1 1 -1 1 -1 -1 -1\n" for i in range(2000, 0, -1)))
    assert [j.id for j in read_swf(p, limit=3)] == ["swf1", "swf2", "swf3"]
