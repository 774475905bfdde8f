"""Hand-worked schedules, including the backfill example of Slurm's documentation.

Slurm's sched/backfill (https://slurm.schedmd.com/sched_config.html, "Backfill scheduling"):
"lower priority jobs are started if doing so does not delay the expected start time of any higher
priority job"; the expected start time comes from the running jobs' time limits.
"""

from __future__ import annotations

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SchedulerInput, SolverPlacer
from tests.scheduler.helpers import fabric, job, pend, run_on


def _fifo(backfill: Backfill, solver: str = "greedy") -> Scheduler:
    # age only: priority = submit order, as in Slurm's examples
    prio = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    return Scheduler("fifo", prio, SolverPlacer(solver), backfill)


def test_slurm_doc_backfill_short_job_runs_long_job_waits():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    a = job("A", 2, wall=100)
    running = [run_on(st, a, ["n1", "n2"], start=0)]
    b = job("B", 4, submit=1, wall=100)   # head: needs the whole cluster -> reservation at t=100
    c = job("C", 1, submit=2, wall=50)    # ends at 60 <= 100: backfills
    d = job("D", 2, submit=3, wall=200)   # would hold n3,n4 past 100: must wait
    out = _fifo(Backfill.easy()).schedule(SchedulerInput(10, pend(b, c, d), running, st))
    assert [j.id for j, _ in out.start] == ["C"]
    assert out.backfilled == {"C"}
    assert out.reservations["B"].start == 100 and len(out.reservations["B"].gpus) == 32
    assert out.reasons == {"B": "Resources", "D": "Priority"}
    assert st.utilisation() == 0.5  # schedule() never mutates the input state


def test_backfill_on_gpus_outside_the_reservation_even_if_longer():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 2, wall=100), ["n1", "n2"])]
    b = job("B", 3, submit=1, wall=100)   # reservation at 100 on n1, n2 + one of n3/n4
    d = job("D", 1, submit=2, wall=500)   # long, but fits on the host B does not need
    out = _fifo(Backfill.easy()).schedule(SchedulerInput(10, pend(b, d), running, st))
    assert [j.id for j, _ in out.start] == ["D"]
    resv = set(out.reservations["B"].gpus)
    assert resv.isdisjoint(out.start[0][1].gpus)
    assert out.reservations["B"].start == 100


def test_no_backfill_keeps_strict_priority_order():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 2, wall=100), ["n1", "n2"])]
    out = _fifo(Backfill.none()).schedule(
        SchedulerInput(10, pend(job("B", 4, submit=1), job("C", 1, submit=2, wall=10)), running, st))
    assert out.start == [] and out.reservations == {}
    assert out.reasons == {"B": "Resources", "C": "Priority"}


def test_easy_lets_a_job_delay_the_second_blocked_job_conservative_does_not():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 3, wall=100), ["n1", "n2", "n3"])]
    b = job("B", 4, submit=1, wall=50)    # reservation [100, 150) on everything
    c = job("C", 2, submit=2, wall=100)   # EASY: no reservation; conservative: [150, 250)
    d = job("D", 1, submit=3, wall=80)    # n4 is free now; ends at 90 < 100, but under conservative
    view = SchedulerInput(10, pend(b, c, d), running, st)
    easy = _fifo(Backfill.easy()).schedule(view)
    assert [j.id for j, _ in easy.start] == ["D"] and set(easy.reservations) == {"B"}
    cons = _fifo(Backfill.conservative()).schedule(view)
    assert set(cons.reservations) == {"B", "C"}
    assert cons.reservations["C"].start == 150
    assert [j.id for j, _ in cons.start] == ["D"]  # 10 + 80 = 90 <= 100: delays neither
    e = job("E", 1, submit=3, wall=200)  # would run over both reservations on n4
    cons2 = _fifo(Backfill.conservative()).schedule(SchedulerInput(10, pend(b, c, e), running, st))
    assert cons2.start == []


def test_gang_is_all_or_nothing():
    fab = fabric(4, 2)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 2, wall=100), ["n1", "n2"])]
    out = _fifo(Backfill.easy()).schedule(SchedulerInput(0, pend(job("B", 3)), running, st))
    assert out.start == []  # 2 free hosts of 3 needed: nothing starts, nothing partial
    out = _fifo(Backfill.easy()).schedule(SchedulerInput(0, pend(job("B", 2)), running, st))
    (j, p), = out.start
    assert len(p.gpus) == 16 and set(p.hosts) == {"n3", "n4"}


def test_slurm_tree_baseline_and_greedy_both_place_whole_gangs():
    fab = fabric(8, 4)
    st = ClusterState(fab)
    for solver in ("slurm-tree", "greedy"):
        out = _fifo(Backfill.easy(), solver).schedule(SchedulerInput(0, pend(job("B", 4), job("C", 2)), [], st))
        assert [len(p.gpus) for _, p in out.start] == [32, 16]
        assert len({g for _, p in out.start for g in p.gpus}) == 48


def test_a_job_given_twice_is_refused_not_started_twice():
    """A hand-built input with one job pending twice (or pending and running) started that gang
    twice, on two sets of GPUs; it is now a ConfigError naming the job."""
    import pytest

    from fabric_hpc.errors import ConfigError

    fab = fabric(4, 2)
    st = ClusterState(fab)
    a = job("A", 1)
    with pytest.raises(ConfigError, match="job 'A' is in the step's input twice"):
        _fifo(Backfill.easy()).schedule(SchedulerInput(0, pend(a, a), [], st))
    running = [run_on(st, job("B", 1), ["n1"])]
    with pytest.raises(ConfigError, match="job 'B' is in the step's input twice"):
        _fifo(Backfill.easy()).schedule(SchedulerInput(0, pend(job("B", 1)), running, st))


def test_a_held_gang_says_topology_only_while_its_gpus_are_free():
    """A gang held for a compact placement said "Topology" also on a full cluster, where no
    placement exists at all; now "Resources" there (the admin's `fabric slurm why` read it as a
    topology problem). With the GPUs free but scattered it is still "Topology". The fast walk and
    the full walk give the same reasons."""
    import pytest

    from fabric_hpc.scheduler import core

    fab = fabric(4, 2)  # leaf1: n1 n2, leaf2: n3 n4
    policy = Scheduler("fifo", MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0,
                                                   weight_age=1000), SolverPlacer("greedy"), Backfill.easy(),
                       compact_wait_s=900.0)
    st = ClusterState(fab)
    running = [run_on(st, job("A", 3, wall=100), ["n1", "n2", "n3"])]
    full = policy.schedule(SchedulerInput(10, pend(job("G", 2, submit=5)), running, st))
    assert full.reasons["G"] == "Resources"
    st2 = ClusterState(fab)
    running2 = [run_on(st2, job("B", 1, wall=100), ["n1"]), run_on(st2, job("C", 1, wall=100), ["n4"])]
    scattered = policy.schedule(SchedulerInput(10, pend(job("G", 2, submit=5)), running2, st2))
    assert scattered.reasons["G"] == "Topology"  # n2 + n3: a placement, across leaves
    queue = pend(job("X", 4, submit=1), job("Y", 2, submit=2), job("G", 2, submit=5))
    fast = dict(policy.schedule(SchedulerInput(10, queue, running, st)).reasons)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core.Scheduler, "fast_walk", False)
        assert dict(policy.schedule(SchedulerInput(10, queue, running, st)).reasons) == fast
