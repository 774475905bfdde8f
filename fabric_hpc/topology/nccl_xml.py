"""The NCCL topology XML of a discovered host: its real PCI bus ids, from its discovery sidecar.

NCCL reads ``NCCL_TOPO_FILE`` and then looks each GPU up by its real bus id (``ncclTopoFillGpu``):
a GPU of the file under another id is a device NCCL never finds, trimmed with its NVLinks, while
NICs are matched by name and would stay under whatever PCIe switches the file invents (wrong
paths, GPUDirect RDMA off at the default ``NCCL_NET_GDR_LEVEL``); an x86 ``<cpu>`` without
``vendor`` (and Intel's ``familyid``/``modelid``, AMD's ``familyid``) fails ``ncclTopoAddCpu``.
So a file is written only from what discovery saw on the host (``fabric topology discover``:
``<host>.facts.json``): each GPU's and compute HCA's bus id and the PCI bridges above it, and the
CPU's vendor, family and model. :func:`missing_ids` says why a host's facts cannot give one; the
Prolog then exports no ``NCCL_TOPO_FILE`` (NCCL's own detection is right where a guess is not).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.discover_sysfs import pci_sysfs_id
from fabric_hpc.topology.model import Fabric

SIDECAR_FORMAT = "fabric-hpc/discovery"  # discover.SIDECAR_FORMAT (that module imports NVML helpers)
#: What NCCL's ncclTopoAddCpu reads of an x86 CPU besides ``vendor``, by vendor.
_X86_IDS = {"GenuineIntel": ("familyid", "modelid"), "AuthenticAMD": ("familyid",),
            "CentaurHauls": ("familyid", "modelid")}


def compute_hcas(facts: dict[str, Any], nic_gbps: float) -> list[dict[str, Any]]:
    """The sidecar's RDMA HCAs with an active port at ``nic_gbps`` (GB/s), in name order: the NICs
    discovery counted for the host type."""
    rate = nic_gbps * 8
    return [h for h in facts.get("hcas") or []
            if any(p.get("state") == "ACTIVE" and p.get("rate_gbit") == rate for p in h.get("ports") or [])]


def missing_ids(fabric: Fabric, host: str, facts: dict[str, Any] | None) -> list[str]:
    """Why ``facts`` cannot give ``host``'s NCCL XML (empty: they can)."""
    from fabric_hpc.topology.export import cpu_arch

    if facts is None:
        return [f"no discovery facts for {host} (fabric topology discover -o <topo_dir>/{host}.yaml on "
                "that host writes them)"]
    if not isinstance(facts, dict) or facts.get("format") != SIDECAR_FORMAT:
        return ["the facts file is not a fabric-hpc discovery sidecar"]
    ht, why = fabric.host_type(host), []
    if facts.get("host") != host:
        why.append(f"the facts are of host {str(facts.get('host'))[:64]!r}, not {host!r}")
    gpus = facts.get("gpus") or []
    if len(gpus) != ht.gpus:
        why.append(f"discovery saw {len(gpus)} GPUs, the fabric model gives {host} {ht.gpus}")
    unknown = [str(g.get("index")) for g in gpus if not g.get("pci_bus_id") or g.get("pci_bridges") is None]
    if unknown:
        why.append(f"no PCI bus id or bridge path of GPU {', '.join(unknown)}")
    hcas = compute_hcas(facts, ht.nic_gbps)
    if len(hcas) < ht.nics:
        why.append(f"discovery saw {len(hcas)} active HCAs at {ht.nic_gbps * 8:g} Gb/s, the model has "
                   f"{ht.nics}")
    elif any(not h.get("pci") or h.get("pci_bridges") is None for h in hcas[:ht.nics]):
        why.append("no PCI bus id or bridge path of an HCA")
    cpu = facts.get("cpus") or {}
    if cpu_arch(ht) == "x86_64":
        need = ("vendor", *_X86_IDS.get(cpu.get("vendor", ""), ()))
        lacking = [k for k in need if k not in cpu]
        if "vendor" in cpu and cpu["vendor"] not in _X86_IDS:
            why.append(f"CPU vendor {str(cpu['vendor'])[:32]!r} is not one NCCL's XML reader knows")
        elif lacking:
            why.append(f"no CPU {'/'.join(lacking)} (from /proc/cpuinfo), which NCCL needs of an x86 CPU")
    return why


def discovered_xml(fabric: Fabric, host: str, facts: dict[str, Any]) -> str:
    """``host``'s NCCL XML with its real bus ids (ConfigError naming what is missing otherwise)."""
    from fabric_hpc.topology.export import _nccl_nvlinks, cpu_arch, gpu_sm, pcie_link

    why = missing_ids(fabric, host, facts)
    if why:
        raise ConfigError(f"no NCCL topology file for {host}: " + "; ".join(why),
                          hint="run `fabric topology discover -o <topo_dir>/<host>.yaml` on the host; "
                               "without its facts NCCL detects the topology itself")
    ht = fabric.host_type(host)
    system = ET.Element("system", version="1")
    speed, width = pcie_link(ht.pcie_gbps)
    link = {"link_speed": f"{speed:.1f} GT/s PCIe", "link_width": str(width)}
    cpus: dict[int, ET.Element] = {}
    pcis: dict[str, ET.Element] = {}

    def cpu(node: int | None) -> ET.Element:
        node = node if node is not None else 0
        if node not in cpus:
            cpus[node] = ET.SubElement(system, "cpu", _cpu_attrs(facts, node, cpu_arch(ht)))
        return cpus[node]

    def device(parent: ET.Element, bridges: list[str], bus: str, pci_class: str) -> ET.Element:
        for b in bridges:
            if b not in pcis:
                pcis[b] = ET.SubElement(parent, "pci", busid=b, class_="0x060400", **link)
            parent = pcis[b]
        pcis[bus] = ET.SubElement(parent, "pci", busid=bus, class_=pci_class, **link)
        return pcis[bus]

    sm, gpu_elements, busid = gpu_sm(ht.gpu_model), {}, {}
    for g in facts["gpus"]:
        i, bus = int(g["index"]), pci_sysfs_id(g["pci_bus_id"])
        dev = device(cpu(g.get("numa_node")), g["pci_bridges"], bus, "0x030200")
        gpu_elements[i], busid[i] = ET.SubElement(dev, "gpu", dev=str(i), sm=sm, rank=str(i), gdr="1"), bus
    for n, h in enumerate(compute_hcas(facts, ht.nic_gbps)[:ht.nics]):
        dev = device(cpu(h.get("numa_node")), h["pci_bridges"], pci_sysfs_id(h["pci"]), "0x020700")
        ET.SubElement(ET.SubElement(dev, "nic"), "net", name=h["name"], dev=str(n),
                      speed=str(int(ht.nic_gbps * 8000)), port="1", gdr="1")
    _nccl_nvlinks(fabric, host, gpu_elements, busid)
    ET.indent(system)
    return ET.tostring(system, encoding="unicode").replace("class_=", "class=") + "\n"


def _cpu_attrs(facts: dict[str, Any], node: int, arch: str) -> dict[str, str]:
    """``numaid``, ``affinity`` (the node's CPUs as a Linux cpumask, when the sidecar lists them),
    ``arch`` and, for x86, ``vendor``/``familyid``/``modelid``."""
    attrs = {"numaid": str(node)}
    cpulist = next((n.get("cpus") for n in facts.get("numa_nodes") or [] if n.get("node") == node), None)
    if cpulist:
        attrs["affinity"] = cpumask(cpulist)
    attrs["arch"] = arch
    if arch == "x86_64":
        cpu = facts["cpus"]
        attrs.update({k: str(cpu[k]) for k in ("vendor", "familyid", "modelid") if k in cpu})
    return attrs


def cpumask(cpulist: str) -> str:
    """``0-3,8`` → ``00000000,0000010f``-style Linux cpumask (32-bit words, highest first), as NCCL
    reads a NUMA node's ``local_cpus``."""
    mask = 0
    for part in cpulist.split(","):
        lo, _, hi = part.partition("-")
        for c in range(int(lo), int(hi or lo) + 1):
            mask |= 1 << c
    words = max(1, (mask.bit_length() + 31) // 32)
    return ",".join(f"{mask >> (32 * w) & 0xFFFFFFFF:08x}" for w in reversed(range(words)))
