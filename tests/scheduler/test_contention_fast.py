"""The contention model's fast neighbour lookup equals the plain loop over each job's resources."""

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
