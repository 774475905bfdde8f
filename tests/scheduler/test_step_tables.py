"""The per-step shortcuts over the pending queue give the answers of the plain code they replace.

* the priority table finds each pending job's row by diffing the queue against the last step's
  (``_diff``) instead of one lookup per job: on random queue histories (starts, arrivals, requeues,
  reorders, equal copies) the rows hold the same data as a fresh table's, and the priorities equal
  the documented scalar formula;
* ``_diff`` returns an exact description of ``new`` or None, for any pair of lists;
* the lazily built ``Decisions.priorities`` / ``reasons`` read like the dicts the step used to build.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import ClassicFairshare, MultifactorPriority, PendingJob, SchedulerInput, fabric_policy
from fabric_hpc.scheduler.core import LazyDict
from fabric_hpc.scheduler.caches import _diff

from .helpers import fabric, job, pend, run_on
from .test_priority import scalar

FAB = fabric(hosts=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=30), st.lists(st.integers(0, 6), max_size=30))
def test_diff_is_exact_or_gives_up(prev, new):
    got = _diff(prev, new)
    if got is None:
        return
    gone, tail = got
    assert gone == sorted(set(gone)) and all(0 <= g < len(prev) for g in gone)
    assert [x for k, x in enumerate(prev) if k not in set(gone)] == new[:tail]


def test_diff_of_the_usual_step_finds_the_departures():
    prev = [object() for _ in range(1000)]
    new = [x for k, x in enumerate(prev) if k not in (3, 500, 999)] + [object(), object()]
    assert _diff(prev, new) == ([3, 500, 999], 997)
    assert _diff(prev, list(prev)) == ([], 1000)


ops = st.lists(st.tuples(st.sampled_from(["start", "arrive", "requeue", "shuffle", "copy", "same"]),
                         st.integers(0, 10_000)), min_size=1, max_size=25)


@settings(max_examples=80, deadline=None)
@given(ops, st.integers(1, 40))
def test_rows_by_diff_equal_a_fresh_lookup(history, first):
    prio = MultifactorPriority(weight_walltime=60_000.0, favor_small=True,
                               fairshare=ClassicFairshare({"a": 2.0, "b": 1.0}))
    counter = iter(range(10**6))

    def fresh() -> PendingJob:
        k = next(counter)
        return PendingJob(job(f"j{k}", 1 + k % 3, submit=float(k % 7), wall=60.0 * (1 + k % 5),
                              tier=("high", "normal", "spot")[k % 3], account="ab"[k % 2]))

    queue = [fresh() for _ in range(first)]
    rng = np.random.default_rng(first)
    unread: list = []
    for step, (op, arg) in enumerate(history):
        if op == "start" and queue:
            for k in sorted(set(rng.integers(0, len(queue), 1 + arg % 3).tolist()), reverse=True):
                del queue[k]
        elif op == "arrive":
            queue += [fresh() for _ in range(1 + arg % 4)]
        elif op == "requeue" and queue:  # the same job back with a new entry, at the end
            k = arg % len(queue)
            queue.append(replace(queue.pop(k), requeues=1))
        elif op == "shuffle":
            queue = [queue[k] for k in rng.permutation(len(queue))]
        elif op == "copy" and queue:  # an equal but distinct entry in place (a driver rebuilding)
            k = arg % len(queue)
            queue[k] = replace(queue[k])
        view = SchedulerInput(float(step * 100), list(queue), [], ClusterState(FAB), {"a": 5.0 * step})
        assert prio.priorities(view) == scalar(prio, view)
        ids, _, submit = prio.ranked(view)
        unread.append((prio.ranked(view)[0], [p.job.id for p in queue]))  # read after later steps
        assert list(ids) == [p.job.id for p in queue] and len(ids) == len(queue)
        assert submit.tolist() == [p.job.submit for p in queue]
    for ids, expected in unread:  # the ids are gathered when first read: the table's rows stayed as they were
        assert len(ids) == len(expected) and list(ids) == expected


def test_lazy_decisions_read_like_the_dicts():
    state = ClusterState(FAB)
    big = job("big", 4, submit=0.0, wall=500.0)
    running = [run_on(state, job("r", 2, wall=1000.0), ["n1", "n2"])]
    pending = pend(big, job("small", 1, submit=1.0), job("later", 4, submit=2.0, wall=500.0))
    policy = fabric_policy(compact_wait_s=None)
    out = policy.schedule(SchedulerInput(10.0, pending, running, state, {}))
    assert [j.id for j, _ in out.start] == ["small"]
    assert out.reasons == {"big": "Resources", "later": "Priority"}
    assert dict(out.priorities) == policy.priority.priorities(SchedulerInput(10.0, pending, running, state, {}))
    lazy = LazyDict(lambda: {"x": 1})
    lazy["y"] = 2
    assert lazy == {"x": 1, "y": 2} and lazy.get("z") is None and len(lazy) == 2
    del lazy["x"]
    assert list(lazy) == ["y"]


def test_unread_ids_survive_the_table_growing():
    prio = MultifactorPriority()
    first = [PendingJob(job(f"a{k}", 1, submit=float(k))) for k in range(300)]  # past the 256 rows at start
    ids, _, _ = prio.ranked(SchedulerInput(1e4, first, [], ClusterState(FAB), {}))
    more = first[5:] + [PendingJob(job(f"b{k}", 1, submit=float(k))) for k in range(700)]  # grows again
    later, _, _ = prio.ranked(SchedulerInput(2e4, more, [], ClusterState(FAB), {}))
    assert list(ids) == [p.job.id for p in first] and list(later) == [p.job.id for p in more]
