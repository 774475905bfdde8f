"""Job ids where one is another's beginning (``a``/``a1``, ``train``/``train2``, ``job``/``job10``)
are ordered (the shorter first), not a TypeError from comparing text with a digit run: in the
scheduler's tie-break, the simulator's trace order and the report's job order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, PendingJob, SchedulerInput, make_policy
from fabric_hpc.scheduler.idorder import id_key
from fabric_hpc.topology import build, generators
from fabric_hpc.topology.report import write_report


def test_an_id_that_begins_another_comes_first():
    ids = ["a1", "a", "train2", "train", "job10", "job", "job9", "5", "5a", "5_1"]
    assert sorted(ids, key=id_key) == ["5", "5_1", "5a", "a", "a1", "job", "job9", "job10", "train", "train2"]


@given(st.lists(st.text(alphabet="ab01_", max_size=6), max_size=30))
def test_any_ids_sort_without_error_and_totally(ids):
    once = sorted(ids, key=id_key)
    assert sorted(reversed(ids), key=id_key) == once  # a total order: the input order does not matter
    assert sorted(once) == sorted(ids)


def test_the_scheduler_breaks_a_tie_of_such_ids():
    fab = build(generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=8))
    jobs = [PendingJob(Job(id=i, request=Request(gpus=16), submit=0.0, walltime=60.0)) for i in ("a1", "a")]
    out = make_policy("fabric").schedule(SchedulerInput(0.0, jobs, [], ClusterState(fab)))
    assert [j.id for j, _ in out.start] == ["a"]


def test_the_report_orders_such_jobs(tmp_path):
    fab = build(generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=8))
    write_report(fab, tmp_path / "r.html", occupancy={fab.gpus[0]: "train2", fab.gpus[1]: "train"})
    assert (tmp_path / "r.html").stat().st_size > 0
