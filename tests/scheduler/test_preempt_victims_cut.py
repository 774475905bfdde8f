"""After an answer's victims are evicted, the kept arrays of the running gangs are cut by the rows
of those victims (``_GangIndex.dropped``) and equal a fresh build; where the next call's gangs are
not exactly the others (the answer was not applied, or something else changed), the general path
decides, so a stale ``dropped`` is never trusted."""

from __future__ import annotations

from fabric_hpc.placement import ClusterState
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
    assert p._index.dropped is not None and p._index.dropped.size == len(victims)
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
