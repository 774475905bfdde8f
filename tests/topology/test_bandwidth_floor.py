"""Bandwidths have a physical floor: a tiny positive (``nic_gbps: 5e-324``) used to pass ``gt=0``, made
a path's bandwidth 0.0 and every cross-host collective cost infinite (all placements tied). 0 stays
allowed where it means none (nvlink_gbps on PCIe hosts, nic_gbps of hosts without NICs)."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators
from fabric_hpc.topology.spec import MIN_GBPS


def _leaf_spine() -> dict:
    return generators.leaf_spine(hosts=4, hosts_per_leaf=2).model_dump()


def _set(data: dict, field: str, value: float) -> str:
    """Set ``field`` to ``value`` everywhere it occurs; the location of its first occurrence."""
    if field == "uplink_gbps":
        group = next(i for i, g in enumerate(data["network"]["groups"]) if g["uplink_gbps"])
        data["network"]["groups"][group]["uplink_gbps"] = value
        return f"network.groups.{group}.uplink_gbps"
    for name, ht in data["host_types"].items():
        ht[field] = value
        return f"host_types.{name}.{field}"
    raise AssertionError("no host type")


@pytest.mark.parametrize("field", ["nic_gbps", "pcie_gbps", "nvlink_gbps", "uplink_gbps"])
@pytest.mark.parametrize("value", [5e-324, 1e-9, 0.0009])
def test_a_bandwidth_below_the_floor_is_refused_naming_the_field(field: str, value: float) -> None:
    data = _leaf_spine()
    where = _set(data, field, value)
    with pytest.raises(ConfigError) as err:
        build(data)
    expected = (f"{where}: is below 0.001 GB/s (8 Mb/s), slower than 10 Mb/s Ethernet: "
                "give the bandwidth in GB/s")
    assert expected in err.value.message


def test_an_nvlink_domain_below_the_floor_is_refused() -> None:
    data = generators.nvl72(racks=1).model_dump()
    data["nvlink_domains"][0]["gbps"] = 1e-300
    with pytest.raises(ConfigError, match=r"nvlink_domains\.0\.gbps: is below 0\.001 GB/s"):
        build(data)


def test_the_floor_and_zero_for_none_are_accepted() -> None:
    data = _leaf_spine()
    for field in ("nic_gbps", "pcie_gbps", "uplink_gbps"):
        _set(data, field, MIN_GBPS)
    _set(data, "nvlink_gbps", 0)
    _set(data, "nvswitches", 0)
    fab = build(data)
    assert fab.index.distance(0, len(fab.gpus) - 1).bandwidth_gbps > 0
