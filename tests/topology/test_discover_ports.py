"""Discovery counts NIC ports, names a compute HCA that is down or trained down, and refuses a damaged
port `rate` file (probe 7, items 2, 3 and 5). Built on a copy of the DGX H100 fixture tree."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fabric_hpc.errors import FabricError
from fabric_hpc.topology import Fabric
from fabric_hpc.topology.discover import discover
from fabric_hpc.topology.nccl_xml import nccl_topo_xml

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture()
def dgx(tmp_path) -> Path:
    root = tmp_path / "dgx"
    shutil.copytree(FIX / "dgx-h100", root, symlinks=True)
    return root


def _run(root: Path):
    found = discover(root=root, nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    return found, next(iter(found.spec.host_types.values()))


def _port(root: Path, hca: str, port: int, rate: str = "400 Gb/sec (4X NDR)",
          state: str = "4: ACTIVE") -> None:
    d = root / "sys/class/infiniband" / hca / "ports" / str(port)
    d.mkdir(parents=True, exist_ok=True)
    (d / "rate").write_text(rate + "\n")
    (d / "state").write_text(state + "\n")
    (d / "link_layer").write_text("InfiniBand\n")


def test_fixture_counts_eight(dgx):
    _, ht = _run(dgx)
    assert (ht.nics, ht.nic_gbps) == (8, 50.0)


def test_each_active_port_of_a_dual_port_hca_is_a_nic(dgx):
    for i in range(8):  # every compute HCA cabled on both ports: NCCL uses mlx5_i:1 and mlx5_i:2
        _port(dgx, f"mlx5_{i}", 2)
    _, ht = _run(dgx)
    assert (ht.nics, ht.nic_gbps) == (16, 50.0)


def test_dual_port_hcas_give_one_net_per_port_in_the_nccl_xml(tmp_path):
    from tests.topology.test_discover_probe_fixes import mini_dgx

    root, rec = mini_dgx(tmp_path)
    for name in ("mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5"):
        _port(root, name, 2)
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    ht = next(iter(found.spec.host_types.values()))
    assert ht.nics == 8
    xml = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts))
    nics = list(xml.iter("nic"))
    assert len(nics) == 4 and all(len(list(n.iter("net"))) == 2 for n in nics)
    assert sorted((n.get("name"), n.get("port")) for n in xml.iter("net")) == sorted(
        (h, p) for h in ("mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5") for p in ("1", "2"))
    assert sorted(int(n.get("dev")) for n in xml.iter("net")) == list(range(8))


def test_a_down_compute_port_is_named(dgx):
    _port(dgx, "mlx5_0", 1, state="1: DOWN")
    found, ht = _run(dgx)
    assert ht.nics == 7
    text = "\n".join(found.notes)
    assert "mlx5_0" in text and "DOWN" in text, found.notes
    assert "discover again" in text


def test_a_compute_hca_trained_down_is_named_as_degraded(dgx):
    _port(dgx, "mlx5_3", 1, rate="200 Gb/sec (4X HDR)")
    found, ht = _run(dgx)
    assert ht.nics == 7
    line = next(n for n in found.notes if "mlx5_3" in n)
    assert "slower than the other" in line and "discover again" in line, found.notes


def test_a_garbled_rate_file_is_refused_naming_it(dgx):
    rate = dgx / "sys/class/infiniband/mlx5_2/ports/1/rate"
    rate.write_bytes(b"\xff\xfe rate\n")
    with pytest.raises(FabricError) as info:
        _run(dgx)
    assert str(rate) in info.value.message
    assert info.value.exit_code == 3
