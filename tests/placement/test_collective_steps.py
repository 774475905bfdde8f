"""The stepped collective form (fabric_hpc.placement.collective_steps) without SimGrid: per-flow
max-min shares, a job alone against the fluid form, and what sharing does to concurrent rings
(the SimGrid comparison is in test_collective_simgrid)."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import collective_time
from fabric_hpc.placement.collective_steps import job_steps, stepped_collective_time, stepped_times
from fabric_hpc.placement.fairshare import flow_fair_rates
from fabric_hpc.topology import build, generators

SIZE = 256 * 2**20


def test_flow_fair_rates_max_min():
    # resource 0 (cap 10) carries flows 0, 1; resource 1 (cap 4) carries flow 1 and 2
    flow = np.array([0, 1, 1, 2])
    res = np.array([0, 0, 1, 1])
    rate = flow_fair_rates(flow, res, 4, np.array([10.0, 4.0]))
    # flows 1 and 2 freeze at 2 on resource 1; flow 0 takes the rest of resource 0 (8); flow 3 uses nothing
    assert rate[:3] == pytest.approx([8.0, 2.0, 2.0])
    assert np.isinf(rate[3])


@pytest.fixture(scope="module")
def fab():
    return build(generators.superpod(sus=1))


def test_alone_close_to_the_fluid_form(fab):
    rng = np.random.default_rng(3)
    for _ in range(8):
        hosts = rng.choice(len(fab.hosts), size=int(rng.integers(2, 5)), replace=False)
        gpus = np.flatnonzero(np.isin(fab.index.gpu_host, hosts) & (rng.random(len(fab.gpus)) < 0.7))
        if len(np.unique(fab.index.gpu_host[gpus])) < 2:
            continue
        fluid = collective_time(fab, gpus, SIZE, algo="ring").seconds
        step = stepped_collective_time(fab, gpus, SIZE).seconds
        # alone every step is the same; each flow waits only its own latency, so never slower
        assert 0.9 * fluid <= step <= fluid * (1 + 1e-9)


def test_sharing_slows_both_rings_and_one_gpu_or_no_network(fab):
    idx = fab.index
    a = np.flatnonzero(np.isin(idx.gpu_host, [0, 8]) & (idx.gpu_local < 4))
    b = np.flatnonzero(np.isin(idx.gpu_host, [0, 8]) & (idx.gpu_local >= 4))
    alone = stepped_times(fab, [job_steps(fab, a, SIZE)])[0]
    both = stepped_times(fab, [job_steps(fab, a, SIZE), job_steps(fab, b, SIZE)])
    assert alone > 0 and both[0] >= alone * (1 - 1e-9) and both[1] > 0
    assert stepped_times(fab, [job_steps(fab, a[:1], SIZE)])[0] == 0.0
    with pytest.raises(ConfigError):
        job_steps(fab, a, SIZE, kind="alltoall")
    with pytest.raises(ConfigError):
        stepped_times(fab, [job_steps(fab, a, SIZE, ecmp=1), job_steps(fab, b, SIZE)])


def test_a_twin_ring_halves_every_share(fab):
    """Beside an identical ring every flow gets half of each resource: the step's transfers take
    twice as long, its latencies do not change."""
    idx = fab.index
    gpus = np.flatnonzero(np.isin(idx.gpu_host, [0, 9]) & (idx.gpu_local < 5))
    alone = stepped_collective_time(fab, gpus, SIZE)
    twin = stepped_collective_time(fab, gpus, SIZE, background=[job_steps(fab, gpus, SIZE)])
    assert 2 * alone.seconds - alone.latency_s - 1e-12 <= twin.seconds <= 2 * alone.seconds + 1e-12
    assert alone.bottleneck in ("nvlink", "nic")
