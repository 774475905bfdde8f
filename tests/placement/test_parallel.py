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
