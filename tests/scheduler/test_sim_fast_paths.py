"""The simulator's fast paths (contention neighbours, GPU sets, never-fits memo, kept queue list) equal the plain ones."""

from __future__ import annotations

import numpy as np

from fabric_hpc.sim import Contention
from fabric_hpc.topology import build, generators
from tests.scheduler.helpers import job


def _plain_neighbours(c: Contention, ids) -> set[str]:
    out: set[str] = set()
    for j in ids:
        for r in c._runs[j].res.tolist():
            out |= c._users.get(r, set())
    return out


def test_neighbours_equal_the_plain_loop_as_jobs_start_and_end():
    fab = build(generators.superpod(sus=2, hosts_per_su=4))
    rng = np.random.default_rng(3)
    c = Contention(fab)
    free = list(range(len(fab.gpus)))
    held: dict[str, list[int]] = {}
    widest = 0
    for step in range(60):
        if held and (rng.random() < 0.4 or len(free) < 8):
            victim = sorted(held)[int(rng.integers(len(held)))]
            assert c._neighbours([victim]) == _plain_neighbours(c, [victim])
            c.end(victim)
            free += held.pop(victim)
        else:
            n = int(rng.integers(2, min(24, len(free)) + 1))
            pick = sorted(rng.choice(free, size=n, replace=False).tolist())
            free = [g for g in free if g not in pick]
            held[f"j{step}"] = pick
            c.start(f"j{step}", job(f"j{step}", n), pick)
        running = sorted(held)
        assert c._neighbours(running) == _plain_neighbours(c, running)
        for j in running:
            near = c._neighbours([j])
            assert near == _plain_neighbours(c, [j])
            widest = max(widest, len(near))
    assert widest >= 3  # jobs did share links (the lookup was exercised beyond a job itself)


def test_start_takes_names_indices_and_repeats_as_one_sorted_gpu_set():
    fab = build(generators.superpod(sus=2, hosts_per_su=4))
    picks = [3, 17, 9, 40, 9, 33]
    plain, mixed = Contention(fab), Contention(fab)
    a = plain.start("a", job("a", 2), sorted(set(picks)))
    b = mixed.start("a", job("a", 2), [fab.gpus[g] if i % 2 else np.int64(g) for i, g in enumerate(picks)])
    assert a == b
    ra, rb = plain._runs["a"], mixed._runs["a"]
    assert np.array_equal(ra.res, rb.res) and np.array_equal(ra.load, rb.load) and ra.rate == rb.rate


def test_remembered_never_fits_equals_the_plain_check():
    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.sim import Simulator
    from fabric_hpc.sim.engine import never_fits

    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=4))
    jobs = [job(f"j{i}", n, gpn=g) for i, (n, g) in enumerate([(1, 4), (2, 8), (5, 4), (4, 4), (1, 4), (5, 4), (9, 1)])]
    sim = Simulator(fab, fabric_policy(placement="greedy"), jobs)
    for _ in range(2):
        for j in jobs:
            assert sim._never_fits(j) == never_fits(j, fab)
    assert sum(sim._never_fits(j) is not None for j in jobs) == 4


class _Checked:
    """The fabric policy, checking that every step's queue is the simulator's pending jobs in order."""

    name = "checked"

    def __init__(self) -> None:
        from fabric_hpc.scheduler import fabric_policy

        self.inner = fabric_policy(placement="greedy")
        self.sim = None
        self.reused = 0
        self._last = None

    def schedule(self, view):
        assert view.pending == list(self.sim.pending.values())
        self.reused += view.pending is self._last
        self._last = view.pending
        return self.inner.schedule(view)


def test_kept_queue_list_is_the_pending_jobs_at_every_step():
    from fabric_hpc.sim import Simulator, gang_workload

    fab = build(generators.superpod(sus=2, hosts_per_su=4))
    policy = _Checked()
    sim = Simulator(fab, policy, gang_workload(jobs=300, cluster_gpus=len(fab.gpus), load=1.5, seed=4))
    policy.sim = sim
    res = sim.run()
    assert res.stats["steps"] > 100 and policy.reused > 10  # the list was kept across unchanged steps


def test_a_constraint_no_idle_state_satisfies_is_rejected_not_left_pending():
    """numa_local over 8 GPUs per host on a DGX (4 GPUs per NUMA node) can never start: the replay
    rejects it with the placement's reason instead of leaving it pending to the end."""
    from dataclasses import replace

    from fabric_hpc.placement import Request
    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.sim import Simulator

    fab = build(generators.superpod(sus=1))
    never = replace(job("never", 2), request=Request(nodes=2, gpus_per_node=8, numa_local=True))
    fits = replace(job("fits", 2, gpn=4, dur=50.0), request=Request(nodes=2, gpus_per_node=4, numa_local=True))
    res = Simulator(fab, fabric_policy(placement="greedy"), [never, fits]).run()
    by_id = {r.job.id: r for r in res.records}
    assert by_id["never"].status == "rejected" and "cannot ever fit" in by_id["never"].reason
    assert "numa_local" in by_id["never"].reason and by_id["fits"].status == "done"
