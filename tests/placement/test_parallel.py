"""Tensor-parallel groups, stage-to-stage pairs and their all-at-once time (placement.parallel)."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import collective_time
from fabric_hpc.placement.parallel import concurrent_rings, pipeline_stages, slowest_alone, stage_pairs, tp_groups
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def fab():
    return build(generators.leaf_spine(hosts=4, hosts_per_leaf=2))


def test_groups_and_pairs_follow_megatrons_rank_order(fab):
    """tp innermost, then data parallel, pipeline outermost: groups are consecutive GPUs in ring
    order, and a pair joins the same position of two adjacent stages."""
    gpus = np.arange(32)  # four 8-GPU hosts
    groups = tp_groups(fab, gpus, 4, 2)
    assert [g.tolist() for g in groups[:2]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert np.array_equal(np.sort(np.concatenate(groups)), gpus)
    stages = pipeline_stages(fab, gpus, 4)
    pairs = stage_pairs(fab, gpus, 4, 4)
    assert len(pairs) == 3 * 8
    assert all(p.tolist() == [stages[s][j], stages[s + 1][j]] for s in range(3) for j in range(8)
               for p in [pairs[s * 8 + j]])
    assert stage_pairs(fab, gpus, 8, 1) == [] and tp_groups(fab, gpus, 1, 4) == []


def test_slowest_alone_is_the_slowest_concurrent_ring(fab):
    """All groups at once, max-min fair: the slowest sets the time; one group alone is the ring."""
    gpus = np.r_[np.arange(4), np.arange(8, 12), np.arange(16, 24)]  # 4 + 4 + 8 GPUs
    groups = tp_groups(fab, gpus, 8)
    size = 48 * 2**20
    assert slowest_alone(fab, groups, size) == pytest.approx(max(map(sum, concurrent_rings(fab, groups, size))))
    one = collective_time(fab, groups[1], size, algo="ring")
    assert slowest_alone(fab, groups[1:], size) == pytest.approx(one.seconds, rel=1e-9)
    assert slowest_alone(fab, groups, size) > 2 * slowest_alone(fab, groups[1:], size)  # the split group
    assert slowest_alone(fab, [], size) == 0.0


@pytest.mark.parametrize(("tp", "pp", "match"), [(3, 1, "do not split"), (4, 3, "do not split"), (0, 2, "whole number")])
def test_bad_layouts_are_refused(fab, tp, pp, match):
    with pytest.raises(ConfigError, match=match):
        stage_pairs(fab, np.arange(16), tp, pp)


@pytest.mark.parametrize("spec", ["superpod:sus=1", "nvl72:racks=2"])
def test_slowest_alone_equals_one_fair_share_over_every_group(spec):
    """Groups inside one NVLink domain taken alone (one per shape) give the same time as the fair
    share over all of them at once, on random placements where some groups cross domains."""
    from fabric_hpc.topology import open_fabric

    fab = open_fabric(spec)
    rng = np.random.default_rng(7)
    for _ in range(12):
        gpus = np.sort(rng.choice(len(fab.gpus), size=32, replace=False))
        for groups in (tp_groups(fab, gpus, 4, 2), stage_pairs(fab, gpus, 4, 2), tp_groups(fab, gpus, 2)):
            every = max(bw + lat for bw, lat in concurrent_rings(fab, groups, 48 * 2**20))
            assert slowest_alone(fab, groups, 48 * 2**20) == pytest.approx(every, rel=1e-9)


def _dense_filling(loads: list, cap: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """An independent max-min progressive filling over a dense [resource, job] matrix (the oracle)."""
    a = np.stack(loads, axis=1) / (1e9 * unit)
    x, active, left = np.zeros(a.shape[1]), np.ones(a.shape[1], bool), cap.astype(float).copy()
    while active.any():
        demand = a[:, active].sum(axis=1)
        if not (demand > 0).any():
            x[active] = np.inf
            break
        step = np.min(left[demand > 0] / demand[demand > 0])
        x[active] += step
        left -= step * demand
        full = (demand > 0) & (left <= 1e-9 * cap)
        active &= ~(a[full] > 0).any(axis=0)
    return x / unit


def test_sparse_fair_equals_a_dense_filling_on_random_incidences():
    from fabric_hpc.placement.fairshare import sparse_fair

    rng = np.random.default_rng(5)
    for _ in range(200):
        nres, njobs = int(rng.integers(1, 12)), int(rng.integers(1, 9))
        cap = rng.uniform(1, 50, nres)
        entries = [(j, int(r), float(rng.choice([1e9, 2e9, 5e8])))
                   for j in range(njobs) for r in rng.choice(nres, int(rng.integers(0, nres + 1)), replace=True)]
        loads = [np.zeros(nres) for _ in range(njobs)]
        for j, r, b in entries:
            loads[j][r] += b  # a repeated (job, resource) entry adds up, as np.add.at would
        unit = rng.uniform(0.5, 2, njobs)
        job = np.array([e[0] for e in entries], np.int64)
        res = np.array([e[1] for e in entries], np.int64)
        amount = np.array([e[2] for e in entries])
        got, _ = sparse_fair(job, res, amount, cap, njobs, unit)
        want = _dense_filling(loads, cap, unit)
        assert np.allclose(got, want, rtol=1e-9), (entries, cap)


def test_stage_sends_of_a_16k_gpu_gang_need_no_jobs_times_resources_matrix():
    """A probe found ``fabric place -r gpus=16384,pp=2`` allocating 3.1 GiB (a dense pairs × fabric
    resources matrix for the 8,192 stage-to-stage pairs; 98 GiB at 65,000 pairs): a traceback
    under a memory limit. The sparse filling keeps it to the pairs' own entries."""
    import tracemalloc

    from fabric_hpc.placement.parallel import slowest_alone, stage_pairs
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=64")
    pairs = stage_pairs(fab, np.arange(16384), 1, 2)
    assert len(pairs) == 8192
    tracemalloc.start()
    try:
        t = slowest_alone(fab, pairs, 48 * 2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0 < t < np.inf
    assert peak < 256 * 2**20, f"peak {peak / 2**20:.0f} MiB"
