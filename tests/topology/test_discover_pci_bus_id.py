"""A PCI bus id from an NVML recording is checked before it becomes a sysfs path: SysfsFacts.pci() read
whatever ``sys/bus/pci/devices/<id>`` led to (``../evil``: outside the devices directory), and a
domain that is no hex number (``zz:18:00.0``) raised a bare ValueError."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.topology.discover_sysfs import SysfsFacts, pci_sysfs_id


def _facts(tmp_path: Path) -> SysfsFacts:
    pci = tmp_path / "sys/bus/pci"
    for d in (pci / "devices/0000:18:00.0", pci / "evil"):
        d.mkdir(parents=True)
        (d / "numa_node").write_text("1\n")
        (d / "vendor").write_text("0x10de\n")
    return SysfsFacts(root=tmp_path, cpus={}, numa={})


@pytest.mark.parametrize("bus_id", ["../evil", "0000:../../evil", "zz:18:00.0",
                                    "00000000:18:00.0/../../../evil"])
def test_a_crafted_bus_id_reads_nothing(tmp_path: Path, bus_id: str) -> None:
    facts = _facts(tmp_path)
    assert facts.pci(bus_id) is None
    assert facts.pci_attrs(bus_id) == {}


def test_a_real_bus_id_is_read(tmp_path: Path) -> None:
    facts = _facts(tmp_path)
    assert pci_sysfs_id("00000000:18:00.0") == "0000:18:00.0"
    found = facts.pci("00000000:18:00.0")
    assert found is not None and (found["numa_node"], found["vendor"]) == (1, "0x10de")
