"""Builders for placement tests: small fabrics and reproducible occupied states."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState
from fabric_hpc.topology import build, generators


def fabric_without_nics(hosts: int = 3, gpus: int = 2):
    """A leaf-spine fabric whose hosts have no NIC and no network (GPUs joined inside a host only)."""
    spec = generators.leaf_spine(hosts=hosts, hosts_per_leaf=hosts, gpus=gpus)
    data = spec.model_dump()
    for ht in data["host_types"].values():
        ht.update(nics=0, nic_gbps=0.0)
    data["network"] = None
    return build(type(spec).model_validate(data))


def random_state(fab, seed: int, busy: float = 0.5) -> ClusterState:
    """Every GPU busy with probability ``busy`` (one job per host), a host down now and then."""
    rng = np.random.default_rng(seed)
    state = ClusterState(fab)
    for h in fab.hosts:
        gpus = [g for g in fab.host_gpus(h) if rng.random() < busy]
        if rng.random() < 0.05:
            state.set_down([h])
        elif gpus:
            state.allocate(f"job-{h}", gpus)
    return state


@pytest.fixture(scope="session")
def small():
    """8 hosts × 4 GPUs (2 sockets, 1 NIC), 2 hosts per leaf, one spine."""
    return build(generators.leaf_spine(hosts=8, hosts_per_leaf=2, gpus=4))


@pytest.fixture(scope="session")
def tiny():
    """4 hosts × 4 GPUs, 2 per leaf: small enough to brute-force total-GPU requests."""
    return build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=4))


@pytest.fixture(scope="session")
def pod():
    """A 2-SU SuperPOD with 4 hosts per SU (rail-optimised, 8 GPUs per host)."""
    return build(generators.superpod(sus=2, hosts_per_su=4))


@pytest.fixture(scope="session")
def nvl():
    return build(generators.nvl72(racks=2))
