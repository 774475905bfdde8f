"""Occupied cluster states for the placement benchmark: replay a random job mix, then let some end.

Jobs arrive with sizes drawn from a production-like mix (half small single-host jobs of 1–4 GPUs,
half multi-host jobs of whole hosts), are put where a simple scheduler would put them (small jobs
first-fit on partly used hosts, large jobs on free hosts of a random leaf, spilling over), until
~92 % of GPUs are busy; then random jobs end until occupancy falls into the target band. The
result is fragmented the way long-running clusters are. Independent of the solvers under test.
"""

from __future__ import annotations

import numpy as np

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.topology import Fabric


def replay(fab: Fabric, seed: int, target: float = 0.78) -> ClusterState:
    rng = np.random.default_rng(seed)
    lv = fabric_levels(fab)
    state = ClusterState(fab)
    leaf = lv.host_dom[:, 1] if lv.host_dom.shape[1] > 1 else np.zeros(len(fab.hosts), np.int64)
    per_host = int(lv.host_gpus.max())
    free = np.full(len(fab.hosts), per_host)
    jobs: list[str] = []
    total = len(fab.gpus)
    k = 0
    while (total - free.sum()) / total < 0.92:
        k += 1
        name = f"bg-{k}"
        if rng.random() < 0.5:
            size = int(rng.choice([1, 2, 2, 4, 4]))
            size = min(size, per_host)
            hosts = np.flatnonzero((free >= size) & (free < per_host))
            if not len(hosts):
                hosts = np.flatnonzero(free >= size)
            if not len(hosts):
                continue
            h = int(hosts[0] if rng.random() < 0.7 else rng.choice(hosts))
            taken = [g for g in fab.host_gpus(fab.hosts[h]) if state.owner[fab.gpu_pos[g]] < 0][:size]
            free[h] -= size
        else:
            n = int(rng.choice([1, 2, 2, 4, 4, 8, 16]))
            start = int(rng.integers(0, leaf.max() + 1))
            order = np.argsort((leaf - start) % (leaf.max() + 1), kind="stable")
            cand = order[free[order] == per_host][:n]
            if len(cand) < n:
                break
            taken = [g for h in cand for g in fab.host_gpus(fab.hosts[h])]
            free[cand] = 0
        state.allocate(name, taken)
        jobs.append(name)
    rng.shuffle(jobs)
    for name in jobs:
        if state.utilisation() <= target:
            break
        state.release(name)
    return state
