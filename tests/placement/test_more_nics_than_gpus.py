"""Hosts with more NICs than GPUs (AWS p5: 32 × 100 Gb/s for 8 GPUs) were modelled with one NIC per GPU
and the rest idle: 8 GPUs with 16 NICs × 25 GB/s gave a two-host ring 187.7 GB/s of bus bandwidth
against 374.6 with 8 × 50 GB/s, the same 400 GB/s per host. Each GPU now has its share of the host's
NICs (``nics / gpus`` of them), as NCCL spreads a GPU's channels over its nearest NICs."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement.collective import collective_time
from fabric_hpc.topology import build

DGX = {"gpus": 8, "gpu_model": "H100", "gpu_memory_gb": 80, "sockets": 2, "cores_per_socket": 56,
       "memory_gb": 2048, "nvlink_gbps": 900, "nvswitches": 4, "pcie_gbps": 64, "nics": 8, "nic_gbps": 50}


def two_hosts(nics: int, nic_gbps: float):
    host = {**DGX, "nics": nics, "nic_gbps": nic_gbps}
    return build({"fabric": 1, "name": f"nics{nics}", "host_types": {"t": host},
                  "hosts": [{"names": "n[1-2]", "type": "t"}],
                  "network": {"levels": ["leaf"], "groups": [
                      {"name": "leaf", "level": "leaf", "switches": 8, "hosts": "n[1-2]"}]}})


def busbw(fab) -> float:
    return collective_time(fab, np.arange(16), 1 << 30, algo="ring").busbw_gbps


@pytest.mark.parametrize(("nics", "gbps"), [(16, 25.0), (32, 12.5), (24, 400 / 24)])
def test_the_host_network_counts_all_its_nics(nics, gbps):
    ref = busbw(two_hosts(8, 50.0))
    assert busbw(two_hosts(nics, gbps)) == pytest.approx(ref, rel=1e-6)


def test_a_gpu_pair_across_hosts_sees_its_nics_together():
    fab = two_hosts(16, 25.0)
    wide = two_hosts(8, 50.0).distance(0, 8).bandwidth_gbps
    assert fab.distance(0, 8).bandwidth_gbps == pytest.approx(wide)


def test_fewer_nics_than_gpus_unchanged():
    """4 NICs for 8 GPUs: two GPUs share each NIC (half the bandwidth of 8 NICs)."""
    assert busbw(two_hosts(4, 50.0)) == pytest.approx(busbw(two_hosts(8, 50.0)) / 2, rel=0.02)
