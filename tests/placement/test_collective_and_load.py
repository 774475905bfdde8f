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
