"""Discovery where NVML's NUMA id of a GPU is a node without CPUs: on Grace platforms (GH200, GB200)
``nvmlDeviceGetNumaNodeId`` answers the GPU's own memory node (NVML: "only applies to platforms where
the GPUs are NUMA nodes"), which sysfs lists with memory and an empty ``cpulist``. Before, that answer
hid the PCI device's own ``numa_node``: with no CPU affinity from NVML every GPU was put on socket 0
(gres.conf ``Cores=`` of socket 0 for all of them), with a note saying NVML gave no NUMA id."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from fabric_hpc.topology.discover import discover

FIXTURES = Path(__file__).parent / "fixtures"


def _host(tmp_path: Path, *, pci_nodes: bool = True) -> tuple[Path, Path]:
    root = tmp_path / "sysfs"
    shutil.copytree(FIXTURES / "dgx-h100", root)
    node = root / "sys/devices/system/node"
    for n, kb in ((2, 100663296), (3, 0)):  # GPU memory nodes: memory (or none onlined), no CPUs
        (node / f"node{n}").mkdir()
        (node / f"node{n}/cpulist").write_text("\n")
        (node / f"node{n}/meminfo").write_text(f"Node {n} MemTotal:       {kb} kB\n")
    (node / "online").write_text("0-3\n")
    rec = json.loads((FIXTURES / "nvml-dgx-h100.json").read_text())
    rec = copy.deepcopy(rec)
    for d in rec["devices"]:
        d["numa_node"] = 2
        d["cpu_affinity"] = {"nvml_error": 3, "text": "Not Supported"}
        if not pci_nodes:
            bus = d["pci_bus_id"].lower()[4:]
            (root / f"sys/bus/pci/devices/{bus}/numa_node").write_text("-1\n")
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps(rec))
    return root, path


def test_gpu_on_a_cpu_less_nvml_node_is_placed_by_its_pci_node(tmp_path):
    root, rec = _host(tmp_path)
    d = discover(root=root, nvml_recording=rec, hostname="gh01")
    ht = d.spec.host_types["gh01-type"]
    assert ht.gpu_numa == [0, 0, 0, 0, 1, 1, 1, 1], d.notes
    assert not [n for n in d.notes if "placement unknown" in n], d.notes
    assert [g["placed_by"] for g in d.facts["gpus"]] == ["sysfs-pci"] * 8


def test_the_note_says_what_was_known_when_nothing_places_it(tmp_path):
    root, rec = _host(tmp_path, pci_nodes=False)
    d = discover(root=root, nvml_recording=rec, hostname="gh01")
    unknown = [n for n in d.notes if "placement unknown" in n]
    assert len(unknown) == 8 and "nvml NUMA node 2 has no CPUs" in unknown[0], d.notes
    assert "no NVML NUMA id" not in unknown[0]
