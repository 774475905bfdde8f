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

import math
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.discover_sysfs import PCIE_LANE_GBPS, pci_sysfs_id
from fabric_hpc.topology.export import cpu_arch, gpu_links, gpu_sm
from fabric_hpc.topology.model import Fabric, gpu_numa_of, rail_of
from fabric_hpc.topology.spec import HostType

SIDECAR_FORMAT = "fabric-hpc/discovery"  # discover.SIDECAR_FORMAT (that module imports NVML helpers)
#: What NCCL's ncclTopoAddCpu reads of an x86 CPU besides ``vendor``, by vendor.
_X86_IDS = {"GenuineIntel": ("familyid", "modelid"), "AuthenticAMD": ("familyid",),
            "CentaurHauls": ("familyid", "modelid")}


def compute_hcas(facts: dict[str, Any], nic_gbps: float) -> list[dict[str, Any]]:
    """The sidecar's compute HCAs, in name order: those discovery counted for the host type
    (``compute_nics``), else (a sidecar from before it was recorded) those with an active port at
    ``nic_gbps`` (GB/s)."""
    hcas = [h for h in facts.get("hcas") or [] if isinstance(h, dict)]
    if isinstance(facts.get("compute_nics"), list):
        chosen = set(facts["compute_nics"])
        return [h for h in hcas if h.get("name") in chosen]
    rate = nic_gbps * 8
    return [h for h in hcas
            if any(p.get("state") == "ACTIVE" and p.get("rate_gbit") == rate for p in h.get("ports") or [])]


def compute_ports(facts: dict[str, Any], nic_gbps: float) -> list[tuple[dict[str, Any], str]]:
    """(HCA, port) of every compute NIC: each ACTIVE port of a compute HCA at ``nic_gbps`` is one
    (NCCL makes mlx5_0:1 and mlx5_0:2 two devices); an HCA without such a port gives its first
    active one, as before ports were counted."""
    out = []
    for h in compute_hcas(facts, nic_gbps):
        ports = [str(p["port"]) for p in h.get("ports") or []
                 if isinstance(p, dict) and p.get("state") == "ACTIVE" and p.get("rate_gbit") == nic_gbps * 8
                 and type(p.get("port")) is int and 0 < p["port"] < 256]
        out += [(h, port) for port in ports or [_active_port(h)]]
    return out


def _odd_names(facts: dict[str, Any]) -> list[str]:
    """HCA names that cannot go into a file (not UTF-8: a sidecar from before discovery refused them)."""
    odd = []
    for h in facts.get("hcas") or []:
        name = str(h.get("name")) if isinstance(h, dict) else ""
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            odd.append(name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:64])
    return odd


def missing_ids(fabric: Fabric, host: str, facts: dict[str, Any] | None) -> list[str]:
    """Why ``facts`` cannot give ``host``'s NCCL XML (empty: they can)."""
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
    hcas = [h for h, _ in compute_ports(facts, ht.nic_gbps)]
    odd = _odd_names(facts)
    if odd:
        why.append(f"HCA name {', '.join(odd)} is not UTF-8 (rerun fabric topology discover, which skips it)")
    if len(hcas) < ht.nics:
        why.append(f"discovery saw {len(hcas)} active HCA ports at {ht.nic_gbps * 8:g} Gb/s, the model has "
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
    why = missing_ids(fabric, host, facts)
    if why:
        raise ConfigError(f"no NCCL topology file for {host}: " + "; ".join(why),
                          hint="run `fabric topology discover -o <topo_dir>/<host>.yaml` on the host; "
                               "without its facts NCCL detects the topology itself")
    ht = fabric.host_type(host)
    system = ET.Element("system", version="1")
    cpus: dict[int, ET.Element] = {}
    pcis: dict[str, ET.Element] = {}
    known = facts.get("pci") if isinstance(facts.get("pci"), dict) else {}

    def cpu(node: int | None) -> ET.Element:
        node = node if node is not None else 0
        if node not in cpus:
            cpus[node] = ET.SubElement(system, "cpu", _cpu_attrs(facts, node, cpu_arch(ht)))
        return cpus[node]

    def device(parent: ET.Element, bridges: list[str], bus: str, pci_class: str) -> ET.Element:
        for b in nccl_bridges(bridges):
            if b not in pcis:
                pcis[b] = ET.SubElement(parent, "pci", _pci_attrs(b, "0x060400", known.get(b), bridge=True))
            parent = pcis[b]
        pcis[bus] = ET.SubElement(parent, "pci", _pci_attrs(bus, pci_class, known.get(bus), bridge=False))
        return pcis[bus]

    sm, busid = gpu_sm(ht.gpu_model), {}
    for g in facts["gpus"]:
        i, bus = int(g["index"]), pci_sysfs_id(g["pci_bus_id"])
        dev = device(cpu(g.get("numa_node")), g["pci_bridges"], bus, "0x030200")
        busid[i] = ET.SubElement(dev, "gpu", dev=str(i), **_sm(sm), rank=str(i)), bus
    nics: dict[str, ET.Element] = {}
    for n, (h, port) in enumerate(compute_ports(facts, ht.nic_gbps)[:ht.nics]):
        if h["name"] not in nics:  # a dual-port HCA: one nic, a net per port
            dev = device(cpu(h.get("numa_node")), h["pci_bridges"], pci_sysfs_id(h["pci"]), "0x020700")
            nics[h["name"]] = ET.SubElement(dev, "nic")
        ET.SubElement(nics[h["name"]], "net", name=h["name"], dev=str(n),
                      speed=str(int(ht.nic_gbps * 8000)), port=port)
    _facts_nvlinks(facts["gpus"], busid)
    ET.indent(system)
    return ET.tostring(system, encoding="unicode").replace("class_=", "class=") + "\n"


def _sm(sm: str | None) -> dict[str, str]:
    """The ``sm`` attribute, or none for an unknown GPU model (NCCL then reads the device's)."""
    return {"sm": sm} if sm else {}


def _active_port(hca: dict[str, Any]) -> str:
    """The HCA port NCCL uses (its first ACTIVE port with a rate, as ``compute_hcas`` counted it;
    a dual-port card cabled on port 2 is not port 1); "1" where the facts give no number."""
    for p in hca.get("ports") or []:
        if isinstance(p, dict) and p.get("state") == "ACTIVE" and p.get("rate_gbit"):
            port = p.get("port")
            if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 256:
                return str(port)
    return "1"


def nccl_bridges(bridges: list[str]) -> list[str]:
    """The bridges above a device (root port first) that NCCL's own sysfs walk keeps
    (``ncclTopoGetXmlFromSys``: "rewind two /"): from the device up, every other one -- a PCIe
    switch's upstream port; the downstream port below it and the CPU's root port are folded."""
    return bridges[len(bridges) - 2::-2][::-1] if len(bridges) >= 2 else []


def _pci_attrs(bus: str, pci_class: str, known: Any, *, bridge: bool) -> dict[str, str]:
    """A ``<pci>``'s attributes: sysfs's values from the sidecar. A device's unknown link is left out
    (NCCL reads it from sysfs or NVML for every GPU and NIC it finds); a bridge's is ``""``, NCCL's own
    value for a link sysfs does not give (it requires both attributes of a bridge read from a file)."""
    known = known if isinstance(known, dict) else {}
    attrs = {"busid": bus, "class_": str(known.get("class") or pci_class)}
    attrs.update({k: str(known[k]) for k in ("vendor", "device", "subsystem_vendor", "subsystem_device",
                                             "link_speed", "link_width") if known.get(k)})
    if bridge:
        attrs.setdefault("link_speed", "")
        attrs.setdefault("link_width", "")
    return attrs


def _facts_nvlinks(gpus: list[dict[str, Any]], elements: dict[int, tuple[ET.Element, str]]) -> None:
    """``nvlink`` children from the links discovery saw: one to the NVSwitch fabric (NCCL's
    ``ffffffff:ff:00.0``) for the links to NVSwitches, one per peer GPU for direct links."""
    for g in gpus:
        i = int(g["index"])
        to_switch = sum(1 for lk in g.get("nvlinks") or [] if lk.get("remote_type") == "nvswitch")
        peers = Counter(lk["remote_gpu"] for lk in g.get("nvlinks") or []
                        if lk.get("remote_type") == "gpu" and lk.get("remote_gpu") in elements)
        if to_switch:
            ET.SubElement(elements[i][0], "nvlink", target="ffffffff:ff:00.0", count=str(to_switch),
                          tclass="0x068000")
        for j, count in sorted(peers.items()):
            ET.SubElement(elements[i][0], "nvlink", target=elements[j][1], count=str(count),
                          tclass="0x030200")


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


def nccl_topo_xml(fabric: Fabric, host: str, facts: dict | None = None) -> str:
    """An NCCL topology file (``NCCL_TOPO_FILE``) for one host: CPUs, PCIe switches, GPUs, NVLink, NICs.

    With ``facts`` (the host's discovery sidecar): its real bus ids (:func:`discovered_xml`). Without: the
    model's picture, made-up bus ids NCCL would drop -- never given to jobs.

    Each CPU (NUMA node) holds one PCIe switch per NIC; under it, a PCI device per GPU that uses
    that NIC and one for the NIC itself, as NCCL reads DGX/HGX hosts (a ``pci`` element holds
    one ``gpu`` or one ``nic``, or child ``pci`` elements). GPUs without a NIC get a switch of
    their own; NICs without a GPU share the switch of the rail before them.
    """
    if facts is not None:
        return discovered_xml(fabric, host, facts)
    ht = fabric.host_type(host)
    system = ET.Element("system", version="1")
    arch, sm = cpu_arch(ht), gpu_sm(ht.gpu_model)
    cpus = [ET.SubElement(system, "cpu", numaid=str(s), arch=arch) for s in range(ht.sockets)]
    ids = _BusIds(pcie_link(ht.pcie_gbps))
    gpu_busid: dict[int, str] = {}
    gpu_elements: dict[int, ET.Element] = {}
    for sock, gpus, nics in pci_switches(ht):
        switch = _pci(cpus[sock], ids, "0x060400")
        for i in gpus:
            dev = _pci(switch, ids, "0x030200")
            gpu_busid[i] = dev.get("busid")
            gpu_elements[i] = ET.SubElement(dev, "gpu", dev=str(i), **_sm(sm), rank=str(i), gdr="1")
        for n in nics:
            nic = ET.SubElement(_pci(switch, ids, "0x020700"), "nic")
            ET.SubElement(nic, "net", name=f"mlx5_{n}", dev=str(n), speed=str(int(ht.nic_gbps * 8000)),
                          port="1", gdr="1")
    _nccl_nvlinks(fabric, host, gpu_elements, gpu_busid)
    ET.indent(system)
    xml = ET.tostring(system, encoding="unicode").replace("class_=", "class=")
    return xml + "\n"


def _nccl_nvlinks(fabric: Fabric, host: str, gpus: dict[int, ET.Element], busid: dict[int, str]) -> None:
    """``nvlink`` children: one to the NVSwitch fabric, or one per directly linked peer GPU."""
    ht = fabric.host_type(host)
    links = gpu_links(fabric, host)
    switched = bool(ht.nvswitches or fabric.nvl_domain_of_host.get(host))
    for i, g in sorted(gpus.items()):
        if switched:
            count = max((c for c in links[i] if c > 0), default=0)
            if count:
                ET.SubElement(g, "nvlink", target="ffffffff:ff:00.0", count=str(count), tclass="0x068000")
            continue
        for j, c in enumerate(links[i]):
            if c > 0:
                ET.SubElement(g, "nvlink", target=busid[j], count=str(c), tclass="0x030200")


def pci_switches(ht: HostType) -> list[tuple[int, list[int], list[int]]]:
    """(CPU socket, GPUs, NICs) per PCIe switch of a host type, in bus order.

    GPU ``i`` sits under the switch of its NIC (rail ``i*nics//gpus``); GPUs of one rail on
    different sockets get a switch per socket (the NIC under the first). A NIC no GPU uses (more
    NICs than GPUs) joins the switch of the nearest rail below it; every GPU and NIC appears once.
    """
    numa = gpu_numa_of(ht)
    if not ht.gpus:
        return [(0, [], [n]) for n in range(ht.nics)]
    switches: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for i in range(ht.gpus):
        rail = rail_of(ht, i) if ht.nics else -1 - i  # no NICs: a switch per GPU
        switches.setdefault((rail, numa[i]), ([], []))[0].append(i)
    first = {}
    for key in switches:
        first.setdefault(key[0], key)
    for n in range(ht.nics):
        owner = max(r for r in first if r <= n)
        switches[first[owner]][1].append(n)
    return [(sock, gpus, nics) for (_, sock), (gpus, nics) in switches.items()]


def _pci(parent: ET.Element, ids: _BusIds, pci_class: str) -> ET.Element:
    speed, width = ids.link
    return ET.SubElement(parent, "pci", busid=ids.next(), class_=pci_class,
                         link_speed=f"{speed:.1f} GT/s PCIe", link_width=str(width))


def pcie_link(gbps: float) -> tuple[float, int]:
    """The PCIe link (GT/s, lanes) whose bandwidth is nearest ``gbps`` (GB/s per GPU, the host type's
    ``pcie_gbps``), the widest of those within 5 % of the nearest: 64 → Gen5 x16, 32 → Gen4 x16,
    16 → Gen3 x16, 1 → Gen1 x4 (NCCL reads a device's bandwidth from these two attributes)."""
    err = {(speed, width): abs(math.log(lane * width / gbps))
           for speed, lane in PCIE_LANE_GBPS.items() for width in (16, 8, 4, 2, 1)}
    best = min(err.values())
    return max((c for c, e in err.items() if e <= best + math.log(1.05)), key=lambda c: (c[1], -c[0]))


class _BusIds:
    """Unique, valid PCI bus ids ``DDDD:BB:00.0`` (4 + 2 hex digits) in order: buses 0x18..0xff of
    domain 0000, then of domain 0001, …, for any number of devices a host type can declare."""

    FIRST_BUS = 0x18
    PER_DOMAIN = 0x100 - FIRST_BUS

    def __init__(self, link: tuple[float, int] = (32.0, 16)) -> None:
        self.count = 0
        self.link = link  # (GT/s, lanes) of every device of the host

    def next(self) -> str:
        domain, bus = divmod(self.count, self.PER_DOMAIN)
        self.count += 1
        return f"{domain:04x}:{self.FIRST_BUS + bus:02x}:00.0"
