"""allreduce_and_load (one set of ring flows) agrees with collective_time and job_load."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement.collective import allreduce_and_load, collective_time, job_load
from fabric_hpc.topology import open_fabric


@pytest.mark.parametrize("ref", ["superpod:sus=2", "nvl72:racks=4"])
def test_allreduce_and_load_matches_the_separate_calls(ref):
    fab = open_fabric(ref)
    rng = np.random.default_rng(0)
    for n in (1, 2, 8, 16, 24, 64, 130):
        g = rng.choice(len(fab.gpus), n, replace=False)
        t, load = allreduce_and_load(fab, g, 2**28)
        want = collective_time(fab, g, 2**28, nvls=False)  # allreduce_and_load: ring or tree
        assert t.seconds == pytest.approx(want.seconds, rel=1e-12)
        assert (t.algo, t.bottleneck) == (want.algo, want.bottleneck)
        np.testing.assert_allclose(load, job_load(fab, g, 2**28), rtol=1e-12)


def test_concurrent_rings_equal_one_fair_share_per_ring():
    """``concurrent_rings`` (one progressive filling over all the rings) gives each ring what
    ``collective_time(ring, algo="ring", background=the others' job_load + background)`` gives
    (max-min fair shares are unique)."""
    from fabric_hpc.placement.parallel import concurrent_rings, dp_rings

    rng = np.random.default_rng(5)
    for spec in ("superpod:sus=2", "nvl72:racks=2"):
        fab = open_fabric(spec)
        for _ in range(6):
            gpus = np.sort(rng.choice(len(fab.gpus), size=32, replace=False))
            rings = dp_rings(fab, gpus, 4, 2)
            other = np.sort(rng.choice(np.setdiff1d(np.arange(len(fab.gpus)), gpus), size=16, replace=False))
            bg = [job_load(fab, other, 2**27)]
            got = concurrent_rings(fab, rings, 2**27, bg)
            for r, ring in enumerate(rings):
                others = [job_load(fab, x, 2**27) for i, x in enumerate(rings) if i != r] + bg
                t = collective_time(fab, ring, 2**27, algo="ring", background=others)
                assert got[r][0] == pytest.approx(t.bandwidth_s, rel=1e-12)
                assert got[r][1] == pytest.approx(t.latency_s, rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda C, fab, g: C.pipeline_stages(fab, g, 3),  # 16 GPUs in 3 stages: a GPU would be dropped
    lambda C, fab, g: C.pipeline_stages(fab, g, 32),  # empty stages
    lambda C, fab, g: C.pipeline_stages(fab, g, 0),
    lambda C, fab, g: C.pipeline_stages(fab, [-1, 0, 1, 2], 2),  # -1 wrapped to the last GPU
    lambda C, fab, g: C.pipeline_stages(fab, [0, 0, 1, 1], 2),
    lambda C, fab, g: C.pipeline_stages(fab, [0, 99_999], 2),  # was a raw IndexError
    lambda C, fab, g: C.dp_rings(fab, g, 3, 1),  # uneven rings of 6/5/5
    lambda C, fab, g: C.concurrent_rings(fab, [np.array([], int)], 1e9),  # was ZeroDivisionError
    lambda C, fab, g: C.concurrent_rings(fab, [g], float("nan")),  # was an infinite time
    lambda C, fab, g: C.dp_allreduce_and_load(fab, [0, 0, 8, 8], 1e9, 2, 1),  # was (0.0, 0.0)
    lambda C, fab, g: C.dp_allreduce_and_load(fab, g, 1e9, 1, 3),
    lambda C, fab, g: C.tp_groups(fab, g, 3),
    lambda C, fab, g: C.stage_pairs(fab, g, 2, 3),
    lambda C, fab, g: C.slowest_alone(fab, [np.array([5])], 1e9),  # a one-GPU group
    lambda C, fab, g: C.slowest_alone(fab, [g], -1.0),
])
def test_parallel_entry_points_refuse_bad_arguments(call):
    """The tp/pp entry points check their arguments as ``collective_time`` does: a ConfigError
    naming the problem, never a silently dropped GPU, a wrapped index or a zero time."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.placement import parallel as C

    fab = open_fabric("superpod:sus=1")
    with pytest.raises(ConfigError):
        call(C, fab, np.arange(16))
