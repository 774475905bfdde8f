"""What Linux sysfs tells about a host: CPUs and sockets, NUMA nodes, PCI devices, RDMA HCAs and
network interfaces. Every reader takes ``root`` (``/`` on a live host, a recorded tree in tests)
and reads ``<root>/sys/...`` (and ``<root>/proc/meminfo`` when there are no NUMA nodes).

Used by :mod:`fabric_hpc.topology.discover`; ``read_sysfs(root) -> SysfsFacts``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError

_RATE = re.compile(r"([\d.]+)\s*Gb/sec")
_MEMTOTAL = re.compile(r"MemTotal:\s*(\d+)\s*kB")
#: PCIe GB/s per lane (one direction, after encoding) by link speed in GT/s.
PCIE_LANE_GBPS = {2.5: 0.25, 5.0: 0.5, 8.0: 0.985, 16.0: 1.969, 32.0: 3.938, 64.0: 7.877}


#: sysfs attributes are at most a page; a bigger file under a --sysfs-root is damage, not sysfs
MAX_ATTR_BYTES = 64 << 10


def read_text(path: Path, *, truncate: bool = False) -> str | None:
    """A sysfs attribute, stripped; None when absent or unreadable (e.g. ``speed`` of a down link).
    Real sysfs and /proc files are regular: anything else (a FIFO, a device) is a ConfigError naming
    it, as is a file over :data:`MAX_ATTR_BYTES` (``truncate``: its first bytes are read instead,
    for ``/proc/cpuinfo`` of a large host). Opened non-blocking, so a FIFO never hangs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path} is not a regular file (sysfs attributes are): refused",
                              hint="check the --sysfs-root directory (a copy of /sys may be damaged)")
        data = b""
        while len(data) <= MAX_ATTR_BYTES and (block := os.read(fd, MAX_ATTR_BYTES + 1 - len(data))):
            data += block
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_ATTR_BYTES and not truncate:
        raise ConfigError(f"{path} is larger than {MAX_ATTR_BYTES:,} bytes, which no sysfs attribute is: "
                          "refused",
                          hint="check the --sysfs-root directory (a copy of /sys may be damaged)")
    return data[:MAX_ATTR_BYTES].decode("utf-8", errors="replace").strip()


def read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


#: more CPUs than any Linux kernel supports (NR_CPUS is at most 8192): a larger list is damage
MAX_CPUS = 1 << 16
_CPU_RANGE = re.compile(r"(\d{1,6})(?:-(\d{1,6}))?")


def parse_cpulist(text: str | None, source: str = "cpu list") -> list[int]:
    """``0-3,8,10-11`` → [0, 1, 2, 3, 8, 10, 11]; anything else (or a list of more than
    :data:`MAX_CPUS` CPUs) is a ConfigError naming ``source``."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = _CPU_RANGE.fullmatch(part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
        if not m or hi < lo or len(out) + hi - lo + 1 > MAX_CPUS:
            raise ConfigError(f"{source}: {str(text)[:60]!r} is not a Linux CPU list (e.g. 0-3,8,10-11)",
                              hint="check the --sysfs-root directory (a copy of /sys may be damaged)")
        out.extend(range(lo, hi + 1))
    return out


def cpus_of_mask(words: list[int]) -> list[int]:
    """CPU numbers set in an NVML affinity mask (64-bit words, lowest CPUs first)."""
    return [64 * w + b for w, word in enumerate(words) for b in range(64) if word >> b & 1]


_BUS_ID = re.compile(r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")


def pci_bridges(device: Path) -> list[str] | None:
    """The bus ids of the PCI bridges above a device, the root port first, read from where its sysfs
    link points (``/sys/bus/pci/devices/0000:18:00.0`` → ``/sys/devices/pci0000:00/0000:00:01.1/
    0000:15:00.0/0000:18:00.0``); None when sysfs does not link it into the device tree (a recorded
    tree of plain directories): the path is then unknown, not empty."""
    if not device.is_symlink():
        return None
    parts = Path(os.path.realpath(device)).parts
    if not any(p.startswith("pci") and not _BUS_ID.fullmatch(p) for p in parts):
        return None
    return [p.lower() for p in parts if _BUS_ID.fullmatch(p)][:-1]


def read_cpu_id(root: Path) -> dict[str, Any]:
    """``vendor`` (``GenuineIntel``, ``AuthenticAMD`` …), ``familyid`` and ``modelid`` of the first
    CPU in ``/proc/cpuinfo`` (what NCCL's topology XML needs of an x86 CPU); what is missing is left out."""
    out: dict[str, Any] = {}
    keys = {"vendor_id": "vendor", "cpu family": "familyid", "model": "modelid"}
    for line in (read_text(root / "proc/cpuinfo", truncate=True) or "").splitlines():
        if not line.strip():
            break  # the first processor's block only
        key, _, value = (x.strip() for x in line.partition(":"))
        if key in keys and value:
            out[keys[key]] = value if key == "vendor_id" else int(value) if value.isdigit() else None
    return {k: v for k, v in out.items() if v is not None}


def pci_sysfs_id(bus_id: str) -> str:
    """NVML's ``00000000:18:00.0`` → sysfs ``0000:18:00.0``."""
    domain, _, rest = bus_id.strip().partition(":")
    if not rest or not re.fullmatch(r"[0-9a-fA-F]{1,8}", domain):  # no bus id: _BUS_ID refuses it
        return bus_id.lower()
    return f"{int(domain, 16):04x}:{rest.lower()}"


@dataclass
class SysfsFacts:
    root: Path
    cpus: dict[int, tuple[int, int]]            # cpu -> (package id, core id)
    numa: dict[int, dict[str, Any]]             # node -> {"cpus": [...], "memory_kb": int|None}
    hcas: list[dict[str, Any]] = field(default_factory=list)
    net: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def packages(self) -> list[int]:
        return sorted({pkg for pkg, _ in self.cpus.values()})

    def socket_of_cpu(self, cpu: int) -> int | None:
        pkg = self.cpus.get(cpu)
        return self.packages.index(pkg[0]) if pkg else None

    def socket_of_node(self, node: int | None) -> int | None:
        """Socket index (0..sockets-1) holding most CPUs of a NUMA node; None if memory-only/unknown."""
        if node is None or node not in self.numa:
            return None
        socks = Counter(s for c in self.numa[node]["cpus"] if (s := self.socket_of_cpu(c)) is not None)
        return socks.most_common(1)[0][0] if socks else None

    def pci(self, bus_id: str) -> dict[str, Any] | None:
        """NUMA node, vendor, class and PCIe link (GB/s) of a PCI device, or None if sysfs lacks it
        (or ``bus_id`` is none: a recording's id must not lead outside sys/bus/pci/devices)."""
        if not _BUS_ID.fullmatch(pci_sysfs_id(bus_id)):
            return None
        d = self.root / "sys/bus/pci/devices" / pci_sysfs_id(bus_id)
        if not d.is_dir():
            return None
        numa = read_int(d / "numa_node")
        return {"numa_node": numa if numa is not None and numa >= 0 else None, "bridges": pci_bridges(d),
                "vendor": read_text(d / "vendor"), "class": read_text(d / "class"),
                "pcie_gbps": pcie_gbps(read_text(d / "current_link_speed"),
                                       read_int(d / "current_link_width"))}

    def pci_attrs(self, bus_id: str) -> dict[str, str]:
        """What NCCL's topology XML takes of a PCI device, as sysfs has it: ``class``, ``vendor``,
        ``device``, ``subsystem_vendor``/``_device``, and ``link_speed``/``link_width`` (the current
        link, else the maximum); what sysfs lacks is left out."""
        if not _BUS_ID.fullmatch(pci_sysfs_id(bus_id)):
            return {}
        d = self.root / "sys/bus/pci/devices" / pci_sysfs_id(bus_id)
        out = {k: read_text(d / k)
               for k in ("class", "vendor", "device", "subsystem_vendor", "subsystem_device")}
        for key in ("speed", "width"):
            out[f"link_{key}"] = read_text(d / f"current_link_{key}") or read_text(d / f"max_link_{key}")
        return {k: v for k, v in out.items() if v}

    def nvidia_pci_gpus(self) -> list[str]:
        """PCI ids of NVIDIA display/3D controllers, as sysfs lists them (seen even without a driver)."""
        base = self.root / "sys/bus/pci/devices"
        out = []
        for d in sorted(base.iterdir()) if base.is_dir() else []:
            cls = read_text(d / "class") or ""
            if read_text(d / "vendor") == "0x10de" and cls[:6] in ("0x0300", "0x0302"):
                out.append(d.name)
        return out


def pcie_gbps(speed: str | None, width: int | None) -> float | None:
    """``32.0 GT/s PCIe`` × 16 lanes → 63.0 GB/s; None when unknown."""
    m = re.match(r"([\d.]+)\s*GT/s", speed or "")
    if not m or not width:
        return None
    lane = PCIE_LANE_GBPS.get(float(m.group(1)))
    return round(lane * width, 1) if lane else None


def read_cpus(root: Path) -> dict[int, tuple[int, int]]:
    base = root / "sys/devices/system/cpu"
    online = parse_cpulist(read_text(base / "online"), str(base / "online"))
    if not online:
        online = sorted(int(p.name[3:]) for p in base.glob("cpu[0-9]*"))
    cpus = {}
    for cpu in online:
        topo = base / f"cpu{cpu}" / "topology"
        pkg = _sysfs_int(topo / "physical_package_id")
        core = _sysfs_int(topo / "core_id")
        cpus[cpu] = (pkg if pkg is not None and pkg >= 0 else 0, core if core is not None else cpu)
    return cpus


_DAMAGED = "check the --sysfs-root directory (a copy of /sys may be damaged) or copy the file again"


def _sysfs_int(path: Path) -> int | None:
    """An integer attribute; None when absent. Present but not an integer is a ConfigError naming
    the file (read as 0 it would silently move CPUs to another socket)."""
    text = read_text(path)
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        raise ConfigError(f"{path}: {text[:60]!r} is not an integer", hint=_DAMAGED) from None


def read_memtotal_kb(path: Path) -> int | None:
    """``MemTotal`` in kB of a NUMA node's ``meminfo`` (or ``/proc/meminfo``); None when the file is
    absent. A file without a ``MemTotal: <n> kB`` line is a ConfigError naming it: dropping it
    would silently leave that node's memory out of ``memory_gb``."""
    text = read_text(path)
    if text is None:
        return None
    m = _MEMTOTAL.search(text)
    if not m:
        raise ConfigError(f"{path}: no 'MemTotal: <n> kB' line (starts {text[:60]!r})", hint=_DAMAGED)
    return int(m.group(1))


def read_numa(root: Path, cpus: dict[int, tuple[int, int]], notes: list[str]) -> dict[int, dict[str, Any]]:
    base = root / "sys/devices/system/node"
    nodes: dict[int, dict[str, Any]] = {}
    for d in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        kb = read_memtotal_kb(d / "meminfo")
        if kb is None:
            notes.append(f"NUMA node {d.name[4:]} has no readable meminfo ({d / 'meminfo'}): "
                         "its memory is not counted in memory_gb")
        nodes[int(d.name[4:])] = {"cpus": parse_cpulist(read_text(d / "cpulist"), str(d / "cpulist")),
                                  "memory_kb": kb}
    if not nodes:
        notes.append("sysfs lists no NUMA nodes; treated as one node holding every CPU")
        nodes[0] = {"cpus": sorted(cpus), "memory_kb": read_memtotal_kb(root / "proc/meminfo")}
    return nodes


def _port(p: Path) -> dict[str, Any]:
    text = read_text(p / "rate")
    rate = _RATE.search(text or "")
    if text and not rate:  # dropping the port would silently drop the HCA from the compute NICs
        raise ConfigError(f"{p / 'rate'}: {text[:60]!r} is not a port rate (e.g. '400 Gb/sec (4X NDR)')",
                          hint=_DAMAGED)
    state = read_text(p / "state") or ""
    return {"port": int(p.name) if p.name.isdigit() else p.name, "state": state.split(":")[-1].strip(),
            "rate_gbit": float(rate.group(1)) if rate else None, "link_layer": read_text(p / "link_layer")}


def _pci_slot(device: Path) -> str | None:
    for line in (read_text(device / "uevent") or "").splitlines():
        if line.startswith("PCI_SLOT_NAME="):
            return line.split("=", 1)[1]
    return Path(os.path.realpath(device)).name if device.is_symlink() else None


_NAME = re.compile(r"[A-Za-z0-9_.:@+-]{1,64}")


def _unusable(d: Path, what: str, notes: list[str]) -> bool:
    """True (with a note) when the entry ``d`` of ``/sys/class/<what>`` cannot be used: its name is not
    a plain ASCII device name (a non-UTF-8 name would break every file it is written to), or its
    ``device`` link is a symlink loop (the kernel never makes one: a damaged or crafted tree)."""
    if not _NAME.fullmatch(d.name):
        shown = d.name.encode("utf-8", "surrogateescape")[:64]
        notes.append(f"{what} device {shown!r} skipped: its name is not a plain ASCII device name "
                     "(letters, digits, _ . : @ + -)")
        return True
    try:
        os.stat(d / "device")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            notes.append(f"{what} device {d.name} skipped: {d / 'device'} is a symlink loop")
            return True
    return False


def read_hcas(root: Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """RDMA devices (InfiniBand or RoCE) from ``/sys/class/infiniband``."""
    base = root / "sys/class/infiniband"
    notes = notes if notes is not None else []
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if _unusable(d, "RDMA", notes):
            continue
        numa = read_int(d / "device/numa_node")
        ports = [_port(p) for p in sorted((d / "ports").iterdir())] if (d / "ports").is_dir() else []
        net = sorted(p.name for p in (d / "device/net").iterdir()) if (d / "device/net").is_dir() else []
        out.append({"name": d.name, "pci": _pci_slot(d / "device"), "pci_bridges": pci_bridges(d / "device"),
                    "numa_node": numa if numa is not None and numa >= 0 else None, "ports": ports,
                    "netdevs": [n for n in net if _NAME.fullmatch(n)]})
    return out


def read_net(root: Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Network interfaces from ``/sys/class/net`` (``physical`` = backed by a device; ``device`` its
    PCI slot, or the name of the non-PCI device, e.g. ``virtio2``)."""
    base = root / "sys/class/net"
    notes = notes if notes is not None else []
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if _unusable(d, "network", notes):
            continue
        speed = read_int(d / "speed")
        numa = read_int(d / "device/numa_node")
        out.append({"name": d.name, "type": read_int(d / "type"), "operstate": read_text(d / "operstate"),
                    "speed_mbit": speed if speed is not None and speed > 0 else None,
                    "physical": (d / "device").exists(), "device": _pci_slot(d / "device"),
                    "numa_node": numa if numa is not None and numa >= 0 else None})
    return out


def read_sysfs(root: str | Path = "/") -> SysfsFacts:
    """Everything discovery reads from sysfs under ``root``."""
    root = Path(root)
    notes: list[str] = []
    cpus = read_cpus(root)
    if not cpus:  # every Linux host lists its CPUs there: anything else is not a sysfs tree
        from fabric_hpc.errors import NotFoundError

        raise NotFoundError(f"no CPUs under {root / 'sys/devices/system/cpu'}: {root} is not the root of a sysfs tree",
                            hint="give --sysfs-root the directory that holds sys/ (default /)")
    numa = read_numa(root, cpus, notes)
    return SysfsFacts(root=root, cpus=cpus, numa=numa, hcas=read_hcas(root, notes), net=read_net(root, notes),
                      notes=notes)


def snapshot_sysfs(dest: str | Path, root: str | Path = "/") -> Path:
    """Copy every file :func:`read_sysfs` reads under ``root`` into ``dest``, so that
    ``read_sysfs(dest)`` gives the same facts (a recorded tree for tests, like NVML recordings).
    A ``device`` link of a NIC or HCA becomes a link to ``sys/devices/snapshot/<its target's
    name>``, which keeps the names of non-PCI devices (e.g. ``virtio2``)."""
    snap = _Snapshot(Path(root), Path(dest))
    snap.cpus()
    snap.pci()
    snap.nics()
    return snap.dst


class _Snapshot:
    """The pieces of :func:`snapshot_sysfs`: from ``src`` (a root) into ``dst``."""

    def __init__(self, src: Path, dst: Path) -> None:
        self.src, self.dst = src, dst

    def copy(self, rel: str) -> None:
        self.copy_names((self.src / rel).parent, str(Path(rel).parent), (Path(rel).name,))

    def copy_names(self, from_dir: Path, into: str, names: tuple[str, ...]) -> None:
        for name in names:
            text = read_text(from_dir / name)
            if text is not None:
                (self.dst / into).mkdir(parents=True, exist_ok=True)
                (self.dst / into / name).write_text(text + "\n", encoding="utf-8")

    def mirror(self, link: Path) -> str:
        """Where a link's target goes in the copy: the same place under sys/devices (so the PCI
        bridges above a device read back), else sys/devices/snapshot/<its name>."""
        real = Path(os.path.realpath(link))
        try:
            inside = real.relative_to(Path(os.path.realpath(self.src)))
        except ValueError:
            inside = None
        if inside is not None and inside.parts[:2] == ("sys", "devices"):
            return str(inside)
        return f"sys/devices/snapshot/{real.name}"

    def link(self, rel: str, into: str) -> None:
        """``rel`` in the copy: a relative link to ``into``."""
        (self.dst / into).mkdir(parents=True, exist_ok=True)
        (self.dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.dst / rel).symlink_to(os.path.relpath(self.dst / into, (self.dst / rel).parent))

    def device(self, rel: str) -> None:
        link = self.src / rel / "device"
        if not link.exists():
            return
        into = self.mirror(link) if link.is_symlink() else f"{rel}/device"
        self.copy_names(link, into, ("uevent", "numa_node"))
        (self.dst / into).mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            self.link(f"{rel}/device", into)

    def cpus(self) -> None:
        cpu = "sys/devices/system/cpu"
        self.copy(f"{cpu}/online")
        for c in read_cpus(self.src):
            self.copy(f"{cpu}/cpu{c}/topology/physical_package_id")
            self.copy(f"{cpu}/cpu{c}/topology/core_id")
        for d in sorted((self.src / "sys/devices/system/node").glob("node[0-9]*")):
            self.copy(f"sys/devices/system/node/{d.name}/meminfo")
            self.copy(f"sys/devices/system/node/{d.name}/cpulist")
        self.copy("proc/meminfo")
        cpu_id = read_cpu_id(self.src)
        if cpu_id:
            names = {"vendor": "vendor_id", "familyid": "cpu family", "modelid": "model"}
            (self.dst / "proc").mkdir(parents=True, exist_ok=True)
            (self.dst / "proc/cpuinfo").write_text("".join(f"{names[k]}\t: {v}\n" for k, v in cpu_id.items()))

    def pci(self) -> None:
        for d in _entries(self.src / "sys/bus/pci/devices"):
            rel = f"sys/bus/pci/devices/{d.name}"
            into = self.mirror(d) if d.is_symlink() else rel
            self.copy_names(d, into, ("numa_node", "vendor", "device", "subsystem_vendor", "subsystem_device",
                                      "class", "current_link_speed", "current_link_width", "max_link_speed",
                                      "max_link_width"))
            if into != rel:
                self.link(rel, into)

    def nics(self) -> None:
        for d in _entries(self.src / "sys/class/infiniband"):
            rel = f"sys/class/infiniband/{d.name}"
            (self.dst / rel).mkdir(parents=True, exist_ok=True)
            self.device(rel)
            for p in _entries(d / "ports"):
                for name in ("rate", "state", "link_layer"):
                    self.copy(f"{rel}/ports/{p.name}/{name}")
            for n in _entries(d / "device/net"):
                (self.dst / rel / "device/net" / n.name).mkdir(parents=True, exist_ok=True)
        for d in _entries(self.src / "sys/class/net"):
            rel = f"sys/class/net/{d.name}"
            (self.dst / rel).mkdir(parents=True, exist_ok=True)
            for name in ("speed", "type", "operstate"):
                self.copy(f"{rel}/{name}")
            self.device(rel)


def _entries(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else []
