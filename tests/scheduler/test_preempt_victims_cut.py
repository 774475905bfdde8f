"""After an answer's victims are evicted, the kept arrays of the running gangs are cut by the rows
of those victims (``_GangIndex.dropped``) and equal a fresh build; where the next call's gangs are
not exactly the others (the answer was not applied, or something else changed), the general path
decides, so a stale ``dropped`` is never trusted."""

from __future__ import annotations

from dataclasses import replace

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import GangPreemption, PendingJob, Preemption, SchedulerInput
from fabric_hpc.scheduler.placer import SolverPlacer

from .test_preempt_gang_table import FAB, JOB, NOW, _running, _same


def _evict(st: ClusterState, running: list, victims) -> None:
    for v in victims:
        st.release(v.job_id)
        running[:] = [r for r in running if r.job.id != v.job_id]


def test_the_victims_rows_cut_the_table(monkeypatch):
    st, running = _running(FAB)
    p = GangPreemption()
    found = p.victims(JOB, SchedulerInput(NOW, [PendingJob(JOB)], running, st), st, SolverPlacer("greedy"))
    assert found is not None
    victims, _ = found
    assert p._index.dropped is not None and p._index.dropped[1].size == len(victims)
    _evict(st, running, victims)
    rebuilt = []
    plain = p._index.lookup
    monkeypatch.setattr(p._index, "lookup", lambda *a: rebuilt.append(1) or plain(*a))
    row_of, p._index.row_of = p._index.row_of, {}  # (the general cut would find no rows: a rebuild)
    assert p._candidates(JOB, SchedulerInput(NOW, [PendingJob(JOB)], running, st), st) is not None
    assert not rebuilt  # cut by the victims' rows, not built again
    p._index.row_of = row_of
    _same(p, running, st)  # the same arrays as a fresh policy's
    assert p._index.dropped is None


def test_a_stale_drop_is_not_trusted():
    st, running = _running(FAB)
    p = GangPreemption()
    found = p.victims(JOB, SchedulerInput(NOW, [PendingJob(JOB)], running, st), st, SolverPlacer("greedy"))
    assert found is not None
    other = next(r for r in running if r.job.id not in {v.job_id for v in found[0]})
    _evict(st, running, [Preemption(other.job.id, JOB.id, 0.0)])  # a different gang left
    _same(p, running, st)


def test_a_drop_made_for_another_table_is_not_used():
    """Victims chosen and not applied, then a rebuilt table (a later time, fewer gangs): the old rows
    must not cut the new table (they once indexed past its end)."""
    st, running = _running(FAB)
    running.reverse()
    p, placer = GangPreemption(), SolverPlacer("greedy")
    assert p.victims(JOB, SchedulerInput(NOW, [PendingJob(JOB)], running, st), st, placer) is not None
    small, later = running[:3], st.copy()
    for r in running[3:]:
        later.release(r.job.id)
    big = replace(JOB, request=Request(nodes=9, gpus_per_node=8))  # nothing frees 9 hosts: None
    assert p.victims(big, SchedulerInput(NOW + 60, [PendingJob(big)], small, later), later, placer) is None
    for r in small[1:]:
        later.release(r.job.id)
    p.victims(JOB, SchedulerInput(NOW + 60, [PendingJob(JOB)], small[:1], later), later, placer)
    _same(p, small[:1], later, now=NOW + 60)
