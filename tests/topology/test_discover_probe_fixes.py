"""Discovery on the trees a node admin's probe crafted (built here, small): a symlink loop, a
non-UTF-8 HCA name, a FIFO and an oversized attribute, DGX storage NICs, a GPU missing from NVML,
MIG, NVLinks to off-host NVSwitches, and the NCCL XML's gdr / link / bridge rules (NCCL's xml.cc)."""

from __future__ import annotations

import json
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import Fabric
from fabric_hpc.topology.discover import discover
from fabric_hpc.topology.discover_sysfs import MAX_ATTR_BYTES, read_text
from fabric_hpc.topology.nccl_xml import missing_ids, nccl_bridges, nccl_topo_xml

NS = {"nvml_error": 3, "text": "Not Supported"}
CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n\n"


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, rel: str, text: object) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{text}\n")

    def link(self, rel: str, target_rel: str) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_symlink():
            p.symlink_to(os.path.relpath(self.root / target_rel, p.parent))

    def cpus(self, sockets: int = 2, cores: int = 2) -> None:
        self.put("sys/devices/system/cpu/online", f"0-{sockets * cores - 1}")
        for c in range(sockets * cores):
            self.put(f"sys/devices/system/cpu/cpu{c}/topology/physical_package_id", c // cores)
            self.put(f"sys/devices/system/cpu/cpu{c}/topology/core_id", c % cores)
        for s in range(sockets):
            self.put(f"sys/devices/system/node/node{s}/cpulist", f"{s * cores}-{s * cores + cores - 1}")
            self.put(f"sys/devices/system/node/node{s}/meminfo", f"Node {s} MemTotal: 1048576 kB")
        self.put("proc/cpuinfo", CPUINFO)

    def pci(self, chain: list[str], bdf: str, numa: int, vendor: str = "0x10de", cls: str = "0x030200",
            speed: str | None = "32.0 GT/s PCIe", width: int | None = 16) -> str:
        for i in range(1, len(chain)):
            brel = "sys/devices/" + "/".join(chain[:i + 1])
            self.put(f"{brel}/class", "0x060400")
            self.put(f"{brel}/vendor", "0x1000")
            self.put(f"{brel}/device", "0xc030")
            self.link(f"sys/bus/pci/devices/{chain[i]}", brel)
        rel = "sys/devices/" + "/".join(chain + [bdf])
        for k, v in (("vendor", vendor), ("class", cls), ("numa_node", numa), ("current_link_speed", speed),
                     ("current_link_width", width), ("uevent", f"PCI_SLOT_NAME={bdf}")):
            if v is not None:
                self.put(f"{rel}/{k}", v)
        self.link(f"sys/bus/pci/devices/{bdf}", rel)
        return rel

    def hca(self, name: str, devrel: str, rate: str, layer: str = "InfiniBand") -> None:
        self.link(f"sys/class/infiniband/{name}/device", devrel)
        self.put(f"sys/class/infiniband/{name}/ports/1/rate", rate)
        self.put(f"sys/class/infiniband/{name}/ports/1/state", "4: ACTIVE")
        self.put(f"sys/class/infiniband/{name}/ports/1/link_layer", layer)


def _gpu(bus: str, numa: int, links: list[dict]) -> dict:
    return {"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{bus[-7:-5]}", "pci_bus_id": bus,
            "memory_total": 85520809984, "numa_node": numa, "cpu_affinity": NS, "gpm_supported": True,
            "nvlinks": links}


def _switch_links(remote: object = "00000000:05:00.0") -> list[dict]:
    return [{"link": k, "state": 1, "version": 6, "remote_type": 2, "remote_pci_bus_id": remote}
            for k in range(18)]


def _save(path: Path, devices: list[dict]) -> Path:
    path.write_text(json.dumps({"format": "fabric-hpc/nvml-recording", "version": 1,
                                "driver_version": "550.54.15", "devices": devices}))
    return path


def mini_dgx(tmp: Path, *, links: object = "00000000:05:00.0") -> tuple[Path, Path]:
    """A DGX H100 in small: 4 GPUs, each with a CX7 IB HCA under the same PCIe switch (root port,
    upstream port, two downstream ports), plus 2 storage CX7 ports at 400G Ethernet on their own root
    port. NIC 0's link is Gen4 x8 (per-device values in the XML)."""
    t = Tree(tmp / "dgx")
    t.cpus()
    devs = []
    for i in range(4):
        rb = 0x15 + 0x20 * i
        chain = [f"pci0000:{rb:02x}", f"0000:{rb:02x}:01.0", f"0000:{rb + 1:02x}:00.0"]
        g = f"0000:{rb + 3:02x}:00.0"
        t.pci(chain + [f"0000:{rb + 2:02x}:01.0"], g, i // 2)
        nrel = t.pci(chain + [f"0000:{rb + 2:02x}:00.0"], f"0000:{rb + 4:02x}:00.0", i // 2, vendor="0x15b3",
                     cls="0x020700", speed=f"{16.0 * (1 + (i > 0)):.1f} GT/s PCIe", width=8 << (i > 0))
        t.hca(f"mlx5_{[0, 3, 4, 5][i]}", nrel, "400 Gb/sec (4X NDR)")
        devs.append(_gpu("0000" + g.upper(), i // 2, _switch_links(links)))
    for fn, name in ((0, "mlx5_1"), (1, "mlx5_2")):
        rel = t.pci(["pci0000:a8", "0000:a8:01.0"], f"0000:aa:00.{fn}", 1, vendor="0x15b3", cls="0x020000")
        t.hca(name, rel, "400 Gb/sec (4X NDR)", layer="Ethernet")
    return t.root, _save(tmp / "dgx.nvml.json", devs)


# 1 -- a device link that loops is skipped with a note, never a traceback

def test_a_symlink_loop_skips_the_device_with_a_note(tmp_path):
    root, rec = mini_dgx(tmp_path)
    for cls, a, b in (("net", "eth9", "loopnic"), ("infiniband", "mlx5_9", "loophca")):
        base = root / "sys/class" / cls
        (base / a).mkdir(parents=True)
        (base / b).mkdir()
        (base / a / "device").symlink_to(f"../{b}/device")
        (base / b / "device").symlink_to(f"../{a}/device")
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    assert any("eth9 skipped" in n and "symlink loop" in n for n in found.notes), found.notes
    assert any("mlx5_9 skipped" in n and "symlink loop" in n for n in found.notes), found.notes
    assert "mlx5_9" not in {h["name"] for h in found.facts["hcas"]}


# 2 -- a non-UTF-8 HCA name is skipped at discovery; old facts holding one give no XML

def test_a_non_utf8_hca_name_is_skipped_and_old_facts_give_no_file(tmp_path):
    from fabric_hpc.slurm.prolog import NoTopologyFile, topo_path, write_topo

    root, rec = mini_dgx(tmp_path)
    odd = os.fsencode(root / "sys/class/infiniband") + b"/mlx5_bond_\xff"
    os.makedirs(odd + b"/ports/1")
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    assert any("mlx5_bond_\\xff" in n and "skipped" in n for n in found.notes), found.notes
    json.dumps(found.facts).encode("utf-8")  # every name writes out
    facts = json.loads(json.dumps(found.facts))
    facts["hcas"].append(dict(facts["hcas"][0], name="mlx5_bond_\udcff"))  # a sidecar of before
    fab = Fabric(found.spec)
    assert any("not UTF-8" in w for w in missing_ids(fab, "dgx01", facts))
    topo = tmp_path / "topo"
    topo.mkdir(mode=0o755)
    os.chmod(topo, 0o755)
    (topo / "dgx01.facts.json").write_text(json.dumps(facts, ensure_ascii=True))
    os.chmod(topo / "dgx01.facts.json", 0o644)
    old = topo_path(topo, "dgx01")
    old.write_text("<system version='1'/>")  # an older file of the host
    with pytest.raises(NoTopologyFile, match="not UTF-8"):
        write_topo(fab, "dgx01", topo)
    assert not old.exists()
    facts["hcas"].pop()
    facts["pci"]["0000:16:00.0"]["vendor"] = "0x\udcff"  # any other non-UTF-8 text of the facts
    (topo / "dgx01.facts.json").write_text(json.dumps(facts, ensure_ascii=True))
    old.write_text("<system version='1'/>")
    with pytest.raises(NoTopologyFile, match="not UTF-8"):
        write_topo(fab, "dgx01", topo)
    assert not old.exists()


# 3 -- a FIFO never hangs; an oversized attribute is refused; /proc/cpuinfo is read in part

def test_a_fifo_is_refused_without_hanging(tmp_path):
    root, rec = mini_dgx(tmp_path)
    (root / "sys/class/net/lo").mkdir(parents=True)
    os.mkfifo(root / "sys/class/net/lo/speed")
    result: list[object] = []

    def run() -> None:
        try:
            result.append(discover(root=root, nvml_recording=rec, hostname="dgx01"))
        except ConfigError as exc:
            result.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(30)
    assert result, "discovery hung on a FIFO"
    assert isinstance(result[0], ConfigError) and "lo/speed is not a regular file" in str(result[0])


def test_an_oversized_attribute_is_refused_and_cpuinfo_truncated(tmp_path):
    root, rec = mini_dgx(tmp_path)
    big = root / "sys/devices/system/node/node0/meminfo"
    big.write_text("Node 0 MemTotal: 1048576 kB\n" + "x" * (4 * MAX_ATTR_BYTES))
    with pytest.raises(ConfigError, match="node0/meminfo is larger than 65,536 bytes"):
        discover(root=root, nvml_recording=rec, hostname="dgx01")
    big.write_text("Node 0 MemTotal: 1048576 kB\n")
    with open(root / "proc/cpuinfo", "a") as f:
        f.write(("processor\t: 1\n" + "flags\t\t: " + "avx512 " * 100 + "\n\n") * 300)
    assert os.path.getsize(root / "proc/cpuinfo") > MAX_ATTR_BYTES
    assert len(read_text(root / "proc/cpuinfo", truncate=True) or "") <= MAX_ATTR_BYTES
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    assert found.facts["cpus"]["vendor"] == "GenuineIntel"


# 4 -- storage NICs at the compute rate are left out (link layer, PCIe proximity to a GPU)

def test_storage_nics_are_not_compute_nics(tmp_path):
    root, rec = mini_dgx(tmp_path)
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    ht = found.spec.host_types["dgx01-type"]
    assert (ht.nics, ht.nic_gbps) == (4, 50.0)
    assert found.facts["compute_nics"] == ["mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5"]
    note = next(n for n in found.notes if "left out" in n)
    assert "left out of the fragment: mlx5_1, mlx5_2 (no GPU under the same PCIe root port)" in note
    system = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts))
    assert [n.get("name") for n in system.iter("net")] == ["mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5"]


def test_without_bridge_paths_the_link_layer_decides(tmp_path):
    """A tree of plain directories (no PCI links): InfiniBand beats Ethernet at the same rate."""
    t = Tree(tmp_path / "flat")
    t.cpus()
    for name, layer in (("mlx5_0", "InfiniBand"), ("mlx5_1", "Ethernet"), ("mlx5_2", "InfiniBand"),
                        ("mlx5_3", "Ethernet"), ("mlx5_4", "InfiniBand")):
        t.put(f"sys/class/infiniband/{name}/device/numa_node", 0)
        t.put(f"sys/class/infiniband/{name}/ports/1/rate", "400 Gb/sec (4X NDR)")
        t.put(f"sys/class/infiniband/{name}/ports/1/state", "4: ACTIVE")
        t.put(f"sys/class/infiniband/{name}/ports/1/link_layer", layer)
    found = discover(root=t.root, use_nvml=False, hostname="flat01")
    assert found.facts["compute_nics"] == ["mlx5_0", "mlx5_2", "mlx5_4"]
    assert found.spec.host_types["flat01-type"].nics == 3


# 5 -- a GPU sysfs shows but NVML does not is noted; so is MIG mode

def test_a_gpu_missing_from_nvml_and_mig_mode_are_noted(tmp_path):
    root, rec = mini_dgx(tmp_path)
    data = json.loads(rec.read_text())
    data["devices"] = data["devices"][:3]
    data["devices"][1]["mig_mode"] = [1, 1]
    _save(rec, data["devices"])
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    assert found.spec.host_types["dgx01-type"].gpus == 3
    assert any("sysfs shows 4 NVIDIA GPU PCI devices but NVML reports 3: 0000:78:00.0" in n
               for n in found.notes), found.notes
    assert any("MIG mode is on for GPU 1" in n for n in found.notes), found.notes


# 6 -- NVLinks to NVSwitches NVML gives no bus id of are still switched, not a GPU mesh

def test_nvlinks_to_switches_without_bus_id_are_switched(tmp_path):
    root, rec = mini_dgx(tmp_path, links=NS)
    found = discover(root=root, nvml_recording=rec, hostname="gb01")
    ht = found.spec.host_types["gb01-type"]
    assert (ht.nvswitches, ht.nvlink_gbps) == (1, 900.0)
    assert any("NVSwitches whose PCI bus id NVML does not give" in n for n in found.notes)
    system = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "gb01", found.facts))
    links = [(lk.get("target"), lk.get("count"), lk.get("tclass")) for lk in system.iter("nvlink")]
    assert links == [("ffffffff:ff:00.0", "18", "0x068000")] * 4


# 7, 8 -- NCCL XML: no forced gdr, per-device links, bridges folded as NCCL's sysfs walk does

def test_nccl_xml_has_no_forced_gdr_and_per_device_links(tmp_path):
    root, rec = mini_dgx(tmp_path)
    gpu2 = "sys/devices/pci0000:55/0000:55:01.0/0000:56:00.0/0000:57:01.0/0000:58:00.0"
    (root / gpu2 / "current_link_speed").unlink()
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    system = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts))
    assert not [e.tag for e in system.iter() if "gdr" in e.attrib]
    pci = {p.get("busid"): p for p in system.iter("pci")}
    def link(bus: str) -> tuple[str | None, str | None]:
        return pci[bus].get("link_speed"), pci[bus].get("link_width")

    assert link("0000:19:00.0") == ("16.0 GT/s PCIe", "8")   # NIC 0: its own Gen4 x8
    assert link("0000:18:00.0") == ("32.0 GT/s PCIe", "16")  # GPU 0
    assert "link_speed" not in pci["0000:58:00.0"].attrib  # unknown: NCCL reads it from sysfs/NVML
    # a bridge's unknown link is NCCL's own "" (NCCL requires both attributes of a bridge)
    assert (pci["0000:16:00.0"].get("link_speed"), pci["0000:16:00.0"].get("link_width")) == ("", "")


def test_nccl_xml_bridges_follow_nccls_sysfs_walk(tmp_path):
    assert nccl_bridges(["0000:15:01.0", "0000:16:00.0", "0000:17:01.0"]) == ["0000:16:00.0"]
    assert nccl_bridges(["r", "u1", "d1", "u2", "d2"]) == ["u1", "u2"]
    assert nccl_bridges(["0000:15:01.0"]) == [] and nccl_bridges([]) == []
    root, rec = mini_dgx(tmp_path)
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    system = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts))
    cpu0 = system.find("cpu")
    switch = cpu0.find("pci")
    assert (switch.get("busid"), switch.get("class"), switch.get("vendor"), switch.get("device")) == (
        "0000:16:00.0", "0x060400", "0x1000", "0xc030")
    # GPU 0 and its NIC under the same switch element: PIX, as NCCL's own detection gives
    assert sorted(p.get("busid") for p in switch.findall("pci")) == ["0000:18:00.0", "0000:19:00.0"]
    assert switch.find("pci/gpu") is not None and switch.find("pci/nic/net").get("name") == "mlx5_0"
    assert not [p for p in system.iter("pci") if p.get("busid") in ("0000:15:01.0", "0000:17:01.0")]


def test_nccl_xml_names_the_hcas_active_port(tmp_path):
    # a dual-port HCA cabled on port 2 (port 1 down): NCCL's <net port> is 2, not a hard-coded 1
    root, rec = mini_dgx(tmp_path)
    ib = root / "sys/class/infiniband/mlx5_0/ports"
    (ib / "2").mkdir()
    for name in ("rate", "state", "link_layer"):
        (ib / "2" / name).write_text((ib / "1" / name).read_text())
    (ib / "1" / "state").write_text("1: DOWN")
    found = discover(root=root, nvml_recording=rec, hostname="dgx01")
    system = ET.fromstring(nccl_topo_xml(Fabric(found.spec), "dgx01", found.facts))
    ports = {n.get("name"): n.get("port") for n in system.iter("net")}
    assert ports["mlx5_0"] == "2" and set(ports.values()) - {"2"} == {"1"}
