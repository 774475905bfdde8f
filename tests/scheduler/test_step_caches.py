"""What the step remembers, or skips, between steps gives the answers of the plain code.

* :class:`~fabric_hpc.scheduler.caches.Tally` (the running jobs' tiers and accounts, kept by the
  difference from the last list) counts like a fresh count over the list, on random histories of
  removals, appends, reorders and equal copies;
* :class:`~fabric_hpc.scheduler.caches.Releases` (the running jobs' releases in time order, kept
  the same way) equals a fresh sort of the list's releases on such histories;
* the step changes a copy of the cluster state made only when it starts or evicts a gang: the
  input's state is never changed, whether the step starts, evicts or does nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from operator import attrgetter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import SchedulerInput, fabric_policy
from fabric_hpc.scheduler import RunningJob
from fabric_hpc.scheduler.caches import Releases, Tally

from .helpers import fabric, job, pend, run_on

FAB = fabric(hosts=4)
OPS = st.sampled_from(["drop", "append", "shuffle", "copy", "clear"])


def _histories(new):
    """A hypothesis-driven list history: yields the list after each operation (drop, append via
    ``new(made, arg, rng)``, shuffle, copy of an item, clear)."""
    def run(history):
        rng = np.random.default_rng(len(history))
        items, made = [], 0
        for op, arg in history:
            if op == "drop" and items:
                for k in sorted(set(rng.integers(0, len(items), 1 + arg % 3).tolist()), reverse=True):
                    del items[k]
            elif op == "append":
                for _ in range(1 + arg % 4):
                    made += 1
                    items.append(new(made, arg, rng))
            elif op == "shuffle":
                items = [items[k] for k in rng.permutation(len(items))]
            elif op == "copy" and items:
                k = arg % len(items)
                items[k] = replace(items[k])
            elif op == "clear":
                items = []
            yield items
    return run


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OPS, st.integers(0, 50)), max_size=40))
def test_tally_counts_like_a_fresh_count(history):
    tally = Tally(attrgetter("job.tier"))
    tiers = ("high", "normal", "spot")
    for items in _histories(lambda made, arg, _: pend(job(f"j{made}", 1, tier=tiers[(made + arg) % 3]))[0])(history):
        assert tally.update(list(items)) == Counter(p.job.tier for p in items)


def _running(made, arg, rng):
    gpus = FAB.gpus
    held = tuple(gpus[k] for k in rng.choice(len(gpus), (made + arg) % 5, replace=False))
    # few distinct ends: ties keep the list's order
    return RunningJob(job(f"j{made}", 1, wall=100.0 * (1 + arg % 3)), held, float(made % 4))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OPS, st.integers(0, 50)), max_size=40))
def test_releases_equal_a_fresh_sort(history):
    releases = Releases()
    pos = FAB.gpu_pos
    for items in _histories(_running)(history):
        at, firsts, idx = releases.update(list(items), pos)
        fresh = sorted(items, key=lambda r: r.walltime_end)
        assert at == [r.walltime_end for r in fresh]
        assert [i.tolist() for i in idx] == [[pos[g] for g in r.gpus] for r in fresh]
        assert firsts == [pos[r.gpus[0]] if r.gpus else -1 for r in fresh]
        at.clear()  # the caller's lists are its own
        assert releases.update(list(items), pos)[0] == [r.walltime_end for r in fresh]


def test_the_step_never_changes_the_input_state():
    state = ClusterState(FAB)
    running = [run_on(state, job("r", 2, wall=1000.0, tier="spot"), ["n1", "n2"])]
    before = state.owner.copy()
    policy = fabric_policy(compact_wait_s=None, preempt_benefit_ratio=1.0)  # the eviction below pays at 1
    for pending in (pend(job("big", 4, submit=0.0)),  # nothing starts
                    pend(job("small", 1, submit=0.0)),  # one start
                    pend(job("urgent", 4, submit=0.0, tier="high"))):  # an eviction, then a start
        out = policy.schedule(SchedulerInput(10.0, pending, running, state, {}))
        assert (state.owner == before).all()
        assert len(out.start) == (pending[0].job.id != "big")
    assert [p.job_id for p in out.preempt] == ["r"]


def test_one_policy_reused_on_another_fabric_decides_as_a_fresh_one():
    """The placer's memo and the step caches are about one fabric: a policy object replayed on a
    second fabric gave placements of the first (a 128-GPU gang on 4 leaves of a fabric whose leaves
    hold 16 GPUs)."""
    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.sim import Simulator, load_trace
    from fabric_hpc.sim.metrics import job_rows
    from fabric_hpc.topology import open_fabric

    a = open_fabric("leaf-spine:hosts=16,hosts_per_leaf=4")
    b = open_fabric("leaf-spine:hosts=16,hosts_per_leaf=2")
    jobs = [j for j in load_trace("synthetic:jobs=300,load=1.5,seed=21,cluster_gpus=128") if j.gpus <= 128]
    pol = fabric_policy()
    Simulator(a, pol, jobs).run()
    assert job_rows(Simulator(b, pol, jobs).run()) == job_rows(Simulator(b, fabric_policy(), jobs).run())


def test_state_copies_share_job_numbers_until_one_changes():
    # ClusterState.copy shares the job-number maps until the first change of either side
    fab = fabric(hosts=2)
    a = ClusterState(fab)
    a.allocate("x", [0, 1])
    b = a.copy()
    c = b.copy()
    b.allocate("y", [2])
    a.release("x")
    c.allocate("z", [3])
    assert (a.holds("x"), a.holds("y"), a.holds("z")) == (False, False, False)
    assert (b.holds("x"), b.holds("y"), b.holds("z")) == (True, True, False)
    assert (c.holds("x"), c.holds("y"), c.holds("z")) == (True, False, True)
    assert b.job_gpus("y") == [fab.gpus[2]] and c.job_gpus("z") == [fab.gpus[3]]
    assert c.job_gpus("x") == [fab.gpus[0], fab.gpus[1]] and a.known_jobs == 1 and c.known_jobs == 2
