"""fabric topology export: an option the chosen format does not read is a usage error; the NCCL
topology XML carries a host's real PCI bus ids, or is not exported to jobs at all."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main


@pytest.mark.parametrize("fmt,option", [
    ("topology-tree", ["--block-size", "4"]), ("gres", ["--block-size", "4"]),
    ("slurm-nodes", ["--block-size", "4"]), ("nccl-xml", ["--block-size", "4"]),
    ("gres", ["--host", "su01-h01"]), ("topology-tree", ["--host", "su01-h01"]),
    ("topology-block", ["--default-topology", "block"]), ("topology-tree", ["--device-dir", "/dev"]),
])
def test_an_option_the_format_ignores_is_a_usage_error(fmt, option, capsys):
    assert main(["topology", "export", "superpod:sus=1", "--format", fmt, *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} is for --format" in err and f"not {fmt}: --format {fmt} would ignore it" in err, err


def test_the_options_of_the_format_are_taken(capsys):
    assert main(["topology", "export", "superpod:sus=1", "--format", "topology-block",
                 "--block-size", "16"]) == 0
    assert "BlockSizes=16\n" in capsys.readouterr().out
    assert main(["topology", "export", "superpod:sus=1", "--format", "topology-yaml", "--block-size", "16",
                 "--default-topology", "block"]) == 0
    assert "block_sizes:" in capsys.readouterr().out


# -- NCCL topology XML: the host's real bus ids, from discovery ---------------------------------------
import os  # noqa: E402
import shutil  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402

from fabric_hpc.errors import ConfigError  # noqa: E402
from fabric_hpc.topology import Fabric  # noqa: E402
from fabric_hpc.topology.discover import discover  # noqa: E402
from fabric_hpc.topology.nccl_xml import nccl_topo_xml  # noqa: E402
from fabric_hpc.topology.nccl_xml import cpumask, missing_ids  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
GPU_BUS = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
HCA_BUS = ["17", "29", "39", "5c", "99", "aa", "b9", "da"]


def _linked_dgx(tmp_path: Path) -> Path:
    """The DGX H100 fixture as a live sysfs lays it out: each PCI device a link into
    /sys/devices/pci0000:XX/<root port>/<PCIe switch>/<device>, GPU i and HCA i under one switch,
    and a /proc/cpuinfo of a Sapphire Rapids CPU."""
    root = tmp_path / "dgx"
    shutil.copytree(FIX / "dgx-h100", root)
    for rail, (g, h) in enumerate(zip(GPU_BUS, HCA_BUS)):
        bus = int(h, 16) - 2
        switch = root / f"sys/devices/pci0000:{bus:02x}/0000:{bus:02x}:01.0/0000:{bus + 1:02x}:00.0"
        switch.mkdir(parents=True)
        gpu = root / f"sys/bus/pci/devices/0000:{g}:00.0"
        shutil.move(gpu, switch / gpu.name)
        gpu.symlink_to(os.path.relpath(switch / gpu.name, gpu.parent))
        hca = root / f"sys/class/infiniband/mlx5_{rail}/device"
        shutil.move(hca, switch / f"0000:{h}:00.0")
        hca.symlink_to(os.path.relpath(switch / f"0000:{h}:00.0", hca.parent))
    (root / "proc/cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
                                       "model\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\n\n"
                                       "processor\t: 1\nvendor_id\t: Other\n")
    return root


def test_the_xml_of_a_discovered_host_carries_its_real_bus_ids(tmp_path):
    found = discover(root=_linked_dgx(tmp_path), nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    assert found.facts["cpus"]["vendor"] == "GenuineIntel" and found.facts["gpus"][0]["pci_bridges"] == [
        "0000:15:01.0", "0000:16:00.0"]
    fab = Fabric(found.spec)
    assert missing_ids(fab, "dgx01", found.facts) == []
    system = ET.fromstring(nccl_topo_xml(fab, "dgx01", found.facts))
    cpus = system.findall("cpu")
    assert [c.get("numaid") for c in cpus] == ["0", "1"]
    assert all((c.get("arch"), c.get("vendor"), c.get("familyid"), c.get("modelid"))
               == ("x86_64", "GenuineIntel", "6", "143") for c in cpus)
    assert cpus[0].get("affinity") == cpumask("0-55,112-167")
    gpus = {g.get("rank"): p.get("busid") for p in system.iter("pci") for g in p.findall("gpu")}
    assert gpus == {str(i): f"0000:{b}:00.0" for i, b in enumerate(GPU_BUS)}
    # each GPU sits with its rail's HCA under the bridge NCCL's own sysfs walk keeps above both
    # (every other bridge from the device up: here 15:01.0, as this tree has no downstream ports)
    for switch in cpus[0].iter("pci"):
        if switch.get("busid") == "0000:15:01.0":
            assert [p.get("busid") for p in switch] == ["0000:18:00.0", "0000:17:00.0"]
            assert switch.find("pci/nic/net").get("name") == "mlx5_0"
            break
    else:
        raise AssertionError("no switch 0000:15:01.0")
    nets = [n.get("name") for n in system.iter("net")]
    assert nets == [f"mlx5_{i}" for i in range(8)]  # the compute HCAs, not the storage ports


def test_facts_without_bridges_or_cpu_ids_give_no_xml(tmp_path):
    found = discover(root=FIX / "dgx-h100", nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    why = missing_ids(Fabric(found.spec), "dgx01", found.facts)
    assert any("no PCI bus id or bridge path of GPU 0, 1" in w for w in why), why
    assert any("no CPU vendor" in w for w in why), why
    with pytest.raises(ConfigError, match="no NCCL topology file for dgx01: "):
        nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts)


def test_a_generated_host_has_no_facts():
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    assert missing_ids(fab, "su01-h01", None)[0].startswith("no discovery facts for su01-h01")


def test_export_cli_takes_the_facts(tmp_path, capsys):
    import json

    found = discover(root=_linked_dgx(tmp_path), nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    spec, facts = tmp_path / "dgx01.yaml", tmp_path / "dgx01.facts.json"
    spec.write_text(found.yaml())
    facts.write_text(json.dumps(found.facts))
    assert main(["topology", "export", str(spec), "--format", "nccl-xml", "--host", "dgx01",
                 "--facts", str(facts)]) == 0
    assert 'busid="0000:18:00.0"' in capsys.readouterr().out
    assert main(["topology", "export", str(spec), "--format", "nccl-xml", "--host", "dgx01"]) == 0
    captured = capsys.readouterr()
    assert "made-up PCI bus ids" in captured.err and "not for NCCL_TOPO_FILE" in captured.err


def test_a_sysfs_snapshot_keeps_the_pci_bridges_and_cpu_ids(tmp_path):
    from fabric_hpc.topology.discover_sysfs import read_cpu_id, read_sysfs, snapshot_sysfs

    live = _linked_dgx(tmp_path)
    snap = snapshot_sysfs(tmp_path / "snap", live)
    a, b = read_sysfs(live), read_sysfs(snap)
    assert a.hcas == b.hcas and a.hcas[0]["pci_bridges"] == ["0000:15:01.0", "0000:16:00.0"]
    assert a.pci("0000:18:00.0") == b.pci("0000:18:00.0") and a.pci("0000:18:00.0")["bridges"]
    assert read_cpu_id(snap) == read_cpu_id(live) == {"vendor": "GenuineIntel", "familyid": 6, "modelid": 143}
