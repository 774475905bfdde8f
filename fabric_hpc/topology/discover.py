"""Discovery on a host: NVML (GPUs, NVLink) + sysfs (CPUs, NUMA, HCAs, NICs) → a one-host fragment.

Public surface (the CLI ``fabric topology discover`` calls these)::

    discover(*, root="/", nvml=None, nvml_recording=None, use_nvml=True, hostname=None,
             type_name=None) -> Discovery
    discover_host(**same) -> FabricSpec            # discover(...).spec
    Discovery.spec: FabricSpec                     # one host type + one host, no network
    Discovery.facts: dict                          # the JSON sidecar: UUIDs, bus ids, NVLink peers, HCAs...
    Discovery.notes: list[str]                     # plain-words caveats (e.g. "NVML is not available ...")
    Discovery.yaml() -> str; Discovery.write(yaml_path, sidecar_path=None) -> (Path, Path)
    record_nvml / save_recording (re-exported from nvml_recording): ``--record FILE``

``nvml`` is a pynvml-like backend (default: the real ``pynvml`` module); ``nvml_recording`` a JSON
recording replayed by :class:`~fabric_hpc.topology.nvml_recording.RecordedNvml` (tests/CI only).
Where NVML is absent (no library, no driver) the result says so in ``notes`` and an event
``topology.discover.nvml_unavailable``, and still reports CPUs, NUMA and NICs from sysfs (0 GPUs).
Rules (which NICs count, NVLink bandwidth, GPU→socket) are in ``docs/topology-sources.md``.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import emit
from fabric_hpc.topology.discover_sysfs import SysfsFacts, cpus_of_mask, pci_sysfs_id, read_cpu_id, read_sysfs
from fabric_hpc.topology.io import dump_spec
from fabric_hpc.topology.mnnvl import gpu_fabric, host_domain
from fabric_hpc.topology.nvml_recording import RecordedNvml, is_error, record_nvml, save_recording
from fabric_hpc.topology.spec import MIN_GBPS, FabricSpec, HostType
from fabric_hpc.topology.spec_check import check_spec

SIDECAR_FORMAT = "fabric-hpc/discovery"
#: NVLink GB/s per link (both directions) by NVML's nvmlNvlinkVersion_t (1=1.0 … 6=4.0, 7=5.0).
NVLINK_LINK_GBPS = {1: 40.0, 2: 50.0, 3: 50.0, 4: 50.0, 5: 50.0, 6: 50.0, 7: 100.0}
REMOTE_GPU, REMOTE_SWITCH = 0, 2
DEFAULT_PCIE_GBPS = 32.0  # PCIe Gen4 x16, when sysfs does not say

__all__ = ["Discovery", "discover", "discover_host", "facts_path", "record_nvml", "save_recording"]


@dataclass
class Discovery:
    spec: FabricSpec
    facts: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def nvml_available(self) -> bool:
        return bool(self.facts["nvml"]["available"])

    def yaml(self) -> str:
        head = "".join(f"# NOTE: {n}\n" for n in self.notes)
        return head + dump_spec(self.spec)

    def write(self, yaml_path: str | os.PathLike[str],
              sidecar_path: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
        """Write the fragment and its sidecar (default :func:`facts_path`: ``<stem>.facts.json``)."""
        yaml_path = Path(yaml_path)
        side = Path(sidecar_path) if sidecar_path else facts_path(yaml_path)
        for path, text in ((yaml_path, self.yaml()), (side, json.dumps(self.facts, indent=1) + "\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
        return yaml_path, side


def facts_path(yaml_path: str | os.PathLike[str]) -> Path:
    """The sidecar of a host's fragment: ``myhost.yaml`` (or ``myhost``, ``myhost.facts.yaml``) →
    ``myhost.facts.json``. A ``.json`` name is a ConfigError: the fragment is YAML, and its facts
    would have gone to ``<name>.facts.facts.json``."""
    path = Path(yaml_path)
    if path.name.lower().endswith(".json"):
        base = path.name[:-len(".json")].removesuffix(".facts") or "host"
        raise ConfigError(f"{os.fspath(path)!r}: the host's fragment is YAML, not JSON (its facts are "
                          "written beside it, to <name>.facts.json)",
                          hint=f"give the fragment's file, e.g. -o {path.with_name(base)}.yaml")
    return path.with_name(path.stem.removesuffix(".facts") + ".facts.json")


def discover_host(**kwargs: Any) -> FabricSpec:
    """The host's fragment only; see :func:`discover`."""
    return discover(**kwargs).spec


def discover(*, root: str | os.PathLike[str] = "/", nvml: Any = None,
             nvml_recording: str | os.PathLike[str] | None = None, use_nvml: bool = True,
             hostname: str | None = None, type_name: str | None = None) -> Discovery:
    """Discover this host (or a recorded one: ``root`` a sysfs tree, ``nvml_recording`` a JSON)."""
    sysfs = read_sysfs(root)
    notes = list(sysfs.notes)
    host = _short_hostname(hostname or socket.gethostname())
    rec, why = _nvml_answers(nvml, nvml_recording, use_nvml)
    if why:
        pci = sysfs.nvidia_pci_gpus()
        seen = f"; sysfs shows {len(pci)} NVIDIA GPU PCI device(s) ({', '.join(pci)})" if pci else ""
        lead = f"NVML is not available on this host ({why})" if use_nvml else why  # there, maybe: not asked
        notes.append(f"{lead}: no GPUs reported (0 GPUs); CPUs, NUMA nodes and NICs below come from "
                     f"sysfs{seen}")
        emit("topology.discover.nvml_unavailable", host=host, reason=why, nvidia_pci_devices=len(pci))
    gpus = _gpus(rec.get("devices", []), sysfs, notes)
    if not why:
        _check_gpu_count(gpus, sysfs, rec.get("devices", []), notes)
    ht = _host_type(sysfs, gpus, notes)
    tname = type_name or f"{host}-type"
    spec = FabricSpec.model_validate({
        "fabric": 1, "name": host,
        "description": f"discovered on {host} by fabric topology discover"
                       + ("" if not why else f"; NVML not available: {why}"),
        "host_types": {tname: ht.model_dump()}, "hosts": [{"names": host, "type": tname}]})
    check_spec(spec, source=f"discovery of {host}")
    facts = _facts(host, rec, why, gpus, sysfs, notes)
    facts["nvlink_domain"] = host_domain(gpus, notes)
    emit("topology.discover.done", host=host, gpus=ht.gpus, gpu_model=ht.gpu_model, sockets=ht.sockets,
         nics=ht.nics, nvml=not why, nvlink_domain=facts["nvlink_domain"])
    return Discovery(spec, facts, notes)


def _short_hostname(name: str) -> str:
    from fabric_hpc.hostlist import NAME, expand

    short = name.split(".")[0] or "localhost"
    try:
        ok = expand(short) == [short] and NAME.match(short) is not None
    except ConfigError:
        ok = False
    if not ok:
        raise ConfigError(f"host name {short!r} is not a plain host name",
                          hint="name the host explicitly: fabric topology discover --hostname NAME "
                               "(Python: discover(hostname=...))")
    return short


def _nvml_answers(nvml: Any, recording: Any, use_nvml: bool) -> tuple[dict[str, Any], str | None]:
    """The NVML answers and, when NVML could not be used, why (in plain words)."""
    if not use_nvml:
        return {}, "NVML was not consulted (--no-nvml; Python: use_nvml=False)"
    if recording is not None:
        nvml = RecordedNvml(recording)
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return {}, "the Python package nvidia-ml-py (pynvml) is not installed"
    rec = record_nvml(nvml)
    if "init_error" in rec:
        code = rec["init_error"]["nvml_error"]
        plain = {12: "libnvidia-ml.so.1 not found: no NVIDIA driver installed",
                 9: "the NVIDIA kernel driver is not loaded",
                 13: "NVML is missing a function; the driver is too old"}.get(code, rec["init_error"]["text"])
        return rec, plain
    return rec, None


def _gpus(devices: list[dict[str, Any]], sysfs: SysfsFacts, notes: list[str]) -> list[dict[str, Any]]:
    """Per GPU: the recorded answers plus the NUMA node / socket it was placed on and how."""
    bus_to_index = {str(d.get("pci_bus_id", "")).lower(): i for i, d in enumerate(devices)}
    out = []
    for i, d in enumerate(devices):
        bus = d["pci_bus_id"] if not is_error(d["pci_bus_id"]) else None
        pci = sysfs.pci(bus) if bus else None
        # NVML's NUMA id first, then the PCI device's; on Grace (GH200, GB200) NVML gives the GPU's own
        # memory node, which has no CPUs: the PCI device's node (or the affinity) then places it
        known = [(n, w) for n, w in ((None if is_error(d["numa_node"]) else d["numa_node"], "nvml"),
                                     (pci["numa_node"] if pci else None, "sysfs-pci"))
                 if isinstance(n, int) and not isinstance(n, bool) and n >= 0]
        node, how = known[0] if known else (None, "unknown")
        socket_ = None
        for n, w in known:
            if (socket_ := sysfs.socket_of_node(n)) is not None:
                node, how = n, w
                break
        affinity = [] if is_error(d["cpu_affinity"]) else cpus_of_mask(d["cpu_affinity"])
        if socket_ is None and affinity:
            socks = Counter(s for c in affinity if (s := sysfs.socket_of_cpu(c)) is not None)
            socket_, how = (socks.most_common(1)[0][0], "cpu-affinity") if socks else (None, how)
        if socket_ is None:
            seen = ", ".join(f"{w} NUMA node {n} has no CPUs" for n, w in known) or "no NVML NUMA id, no " \
                "sysfs PCI node"
            notes.append(f"GPU {i}: NUMA placement unknown ({seen}, no affinity); put on socket 0")
            socket_ = 0
        out.append({"index": i, "name": _err_none(d["name"]), "uuid": _err_none(d["uuid"]), "pci_bus_id": bus,
                    "pci_bridges": pci["bridges"] if pci else None,
                    "memory_bytes": _err_none(d["memory_total"]), "numa_node": node, "socket": socket_,
                    "placed_by": how, "cpu_affinity": _cpulist(affinity),
                    "gpm_supported": _err_none(d["gpm_supported"]),
                    "pcie_gbps": pci["pcie_gbps"] if pci else None,
                    "nvlinks": _links(d["nvlinks"], bus_to_index),
                    "fabric": gpu_fabric(d.get("fabric"), i, notes)})
    return out


def _check_gpu_count(gpus: list[dict[str, Any]], sysfs: SysfsFacts, devices: list[dict[str, Any]],
                     notes: list[str]) -> None:
    """Notes on GPUs sysfs shows but NVML does not report (disabled, fallen off the bus, held by
    another driver), and on GPUs in MIG mode (when the recording has ``mig_mode``)."""
    seen = {pci_sysfs_id(g["pci_bus_id"]) for g in gpus if g["pci_bus_id"]}
    pci = sysfs.nvidia_pci_gpus()
    missing = [b for b in pci if b not in seen]
    if missing:
        notes.append(f"sysfs shows {len(pci)} NVIDIA GPU PCI devices but NVML reports {len(gpus)}: "
                     f"{', '.join(missing)} not reported by NVML (disabled, fallen off the bus or held by "
                     "another driver); the fragment counts only the GPUs NVML reports")
    mig = [str(i) for i, d in enumerate(devices)
           if isinstance(d.get("mig_mode"), list) and d["mig_mode"][:1] == [1]]
    if mig:
        notes.append(f"MIG mode is on for GPU {', '.join(mig)}: jobs see MIG instances, not whole GPUs; "
                     "the fragment counts whole GPUs")


def _err_none(value: Any) -> Any:
    return None if is_error(value) else value


def _cpulist(cpus: list[int]) -> str:
    runs: list[str] = []
    for c in sorted(cpus):
        if runs and "-" in runs[-1] and int(runs[-1].split("-")[1]) == c - 1:
            runs[-1] = f"{runs[-1].split('-')[0]}-{c}"
        elif runs and "-" not in runs[-1] and int(runs[-1]) == c - 1:
            runs[-1] = f"{runs[-1]}-{c}"
        else:
            runs.append(str(c))
    return ",".join(runs)


def _links(links: Any, bus_to_index: dict[str, int]) -> list[dict[str, Any]]:
    if is_error(links):
        return []
    out = []
    for e in links:
        if e.get("state") != 1:
            continue
        remote = _err_none(e.get("remote_pci_bus_id"))
        out.append({"link": e["link"], "version": _err_none(e.get("version")),
                    "remote_type": {0: "gpu", 1: "ibmnpu", 2: "nvswitch"}.get(_err_none(e.get("remote_type")),
                                                                               "unknown"),
                    "remote_pci_bus_id": remote,
                    "remote_gpu": bus_to_index.get(str(remote).lower()) if remote else None})
    return out


def _nvlink(gpus: list[dict[str, Any]], notes: list[str]) -> tuple[float, int, list[str]]:
    """(NVLink GB/s per GPU, NVSwitch count, NVSwitch bus ids) from the active links."""
    if not gpus or not any(g["nvlinks"] for g in gpus):
        return 0.0, 0, []
    per_gpu = []
    for g in gpus:
        total = 0.0
        for link in g["nvlinks"]:
            if link["version"] not in NVLINK_LINK_GBPS:
                notes.append(f"GPU {g['index']} link {link['link']}: unknown NVLink version "
                             f"{link['version']}; counted as 50 GB/s")
            total += NVLINK_LINK_GBPS.get(link["version"], 50.0)
        per_gpu.append(total)
    if len(set(per_gpu)) > 1:
        notes.append(f"GPUs have different NVLink bandwidth ({sorted(set(per_gpu))} GB/s); "
                     "the smallest is used")
    to_switch = [lk for g in gpus for lk in g["nvlinks"] if lk["remote_type"] == "nvswitch"]
    switches = sorted({lk["remote_pci_bus_id"] for lk in to_switch if lk["remote_pci_bus_id"]})
    count = len(switches)
    if to_switch and not switches:
        count = 1
        notes.append(f"{len(to_switch)} NVLinks go to NVSwitches whose PCI bus id NVML does not give "
                     "(switches outside this host, e.g. a GB200 NVL72's switch trays): modelled as "
                     "nvswitches: 1; `fabric topology assemble` of the hosts' fragments puts hosts of one "
                     "NVML fabric clique in one nvlink_domains entry with nvswitches: 0 here")
    elif not switches and any(lk["remote_type"] == "gpu" for g in gpus for lk in g["nvlinks"]):
        notes.append("GPUs are linked directly (no NVSwitch); the fabric model treats them as a full mesh")
        _partial_mesh_note(gpus, notes)
    return min(per_gpu), count, switches


def _partial_mesh_note(gpus: list[dict[str, Any]], notes: list[str]) -> None:
    """A note when direct NVLinks join only some GPU pairs (NVLink bridges on PCIe GPUs: H100 NVL,
    A100 PCIe): the model's full mesh then claims NVLink between GPUs that have none."""
    direct = [(g["index"], lk["remote_gpu"]) for g in gpus for lk in g["nvlinks"]
              if lk["remote_type"] == "gpu"]
    if any(peer is None for _, peer in direct):  # NVML did not say which GPU a link reaches: no claim
        return
    pairs = {frozenset(pair) for pair in direct if pair[0] != pair[1]}
    n = len(gpus)
    if len(pairs) == n * (n - 1) // 2:
        return
    shown = ", ".join("-".join(map(str, sorted(p))) for p in sorted(pairs, key=sorted)) or "none"
    notes.append(f"NVLink joins only {len(pairs)} of the {n * (n - 1) // 2} GPU pairs ({shown}; e.g. NVLink "
                 "bridges): the fabric model's full mesh, and so placement and gres.conf Links=, count "
                 "NVLink between GPUs that have none; set nvlink_gbps: 0 in the host type to model them as "
                 "PCIe-only")


def _compute_nics(sysfs: SysfsFacts, notes: list[str],
                  gpus: list[dict[str, Any]] | None = None) -> tuple[int, float, list[str]]:
    """(count, GB/s each, names) of the compute NICs: of the active RDMA ports, those sharing a PCIe
    switch (root port) with a GPU when sysfs shows any such, then the most common (link layer, rate),
    InfiniBand before Ethernet on a tie; else physical Ethernet interfaces that are up. Each active
    port at that rate is one NIC (NCCL uses mlx5_0:1 and mlx5_0:2 as two devices); ``names`` are the
    HCAs. The others are named in a note and listed in the sidecar only; a compute HCA that is down
    or slower than the others gets a note of its own."""
    cands = [(h["name"], max(p["rate_gbit"] for p in ports), _layer(h),
              sum(p["rate_gbit"] == max(q["rate_gbit"] for q in ports) for p in ports))
             for h in sysfs.hcas if (ports := _active_ports(h))]
    kind, why = "RDMA port", {}
    if not cands:
        kind = "Ethernet interface"
        cands = [(n["name"], n["speed_mbit"] / 1000, "Ethernet", 1) for n in sysfs.net
                 if n["physical"] and n["type"] == 1 and n["operstate"] == "up" and n["speed_mbit"]]
    cands = _above_floor(cands, notes)
    if not cands:
        notes.append("no active RDMA HCA or physical Ethernet interface with a known speed: nics: 0")
        return 0, 0.0, []
    near = _near_gpus(sysfs, gpus or [], {c[0] for c in cands} | {h["name"] for h in sysfs.hcas})
    if near:
        why = {c[0]: "no GPU under the same PCIe root port" for c in cands if c[0] not in near}
        cands = [c for c in cands if c[0] in near]
    groups: Counter[tuple[str, float]] = Counter()
    for _, rate, lay, count in cands:
        groups[(lay, rate)] += count
    layer, rate = max(groups, key=lambda k: (groups[k], k[0] == "InfiniBand", k[1]))
    chosen = [c[0] for c in cands if (c[2], c[1]) == (layer, rate)]
    count = groups[(layer, rate)]
    slow = {c[0]: c[1] for c in cands if c[2] == layer and c[1] < rate}
    why.update({c[0]: f"{c[2]} at {c[1]:g} Gb/s" for c in cands if c[0] not in chosen and c[0] not in slow})
    if why:
        by_why: dict[str, list[str]] = {}
        for n in sorted(why, key=_natural):
            by_why.setdefault(why[n], []).append(n)
        notes.append(f"{count} {kind}s ({layer} at {rate:g} Gb/s) counted as the compute NICs; "
                     "left out of the fragment: "
                     + "; ".join(f"{', '.join(ns)} ({w})" for w, ns in by_why.items()))
    _unhealthy_note(sysfs, notes, slow, near, layer, rate, count)
    return count, rate / 8, chosen


_Cand = tuple[str, float, str, int]  # (name, Gb/s, link layer, ports at that rate)


def _above_floor(cands: list[_Cand], notes: list[str]) -> list[_Cand]:
    """The candidate NICs (name, Gb/s, ...) at or above the fabric file's bandwidth floor; the others
    (a sysfs speed no link runs at) are left out with a note, as no host type could hold them."""
    slow = [c for c in cands if c[1] / 8 < MIN_GBPS]
    if slow:
        notes.append(f"left out as NICs, below the {MIN_GBPS:g} GB/s floor of a fabric file: "
                     + ", ".join(f"{c[0]} ({c[1] * 1000:g} Mb/s)" for c in slow))
    return [c for c in cands if c[1] / 8 >= MIN_GBPS]


def _active_ports(hca: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in hca["ports"] if p["state"] == "ACTIVE" and p["rate_gbit"]]


def _unhealthy_note(sysfs: SysfsFacts, notes: list[str], slow: dict[str, float], near: set[str],
                    layer: str, rate: float, count: int) -> None:
    """One note naming the compute HCAs not counted because a link is down or trained down: the host
    then has fewer ``nics`` than its neighbours (another host type, other rails)."""
    bad = [f"{n} (at {r:g} Gb/s, slower than the other compute NICs at {rate:g})" for n, r in slow.items()]
    for h in sysfs.hcas:
        layers = {p["link_layer"] for p in h["ports"]}
        if h["ports"] and not _active_ports(h) and layer in layers and (not near or h["name"] in near):
            states = ", ".join(f"port {p['port']} {p['state'] or 'state unknown'}" for p in h["ports"])
            bad.append(f"{h['name']} ({states})")
    if bad:
        notes.append(f"compute HCA(s) not counted, their link is down or degraded: {'; '.join(sorted(bad))}; "
                     f"nics: {count} is what works now, so this host may get another host type than its "
                     "neighbours: fix the link (ibstat shows it) and discover again, or write the host's "
                     "design nics/nic_gbps in the fabric file by hand")


def _layer(hca: dict[str, Any]) -> str:
    layers = [p["link_layer"] for p in hca["ports"] if p["state"] == "ACTIVE" and p["rate_gbit"]]
    return "InfiniBand" if "InfiniBand" in layers else (layers[0] or "unknown") if layers else "unknown"


def _natural(name: str) -> list[Any]:
    """``mlx5_10`` after ``mlx5_9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _near_gpus(sysfs: SysfsFacts, gpus: list[dict[str, Any]], names: set[str]) -> set[str]:
    """The HCAs among ``names`` under the same PCIe root port as a GPU (a DGX's compute NICs share
    a PCIe switch with their GPU; its storage NICs do not). Empty when sysfs gives no bridge path."""
    roots = {g["pci_bridges"][0] for g in gpus if g.get("pci_bridges")}
    return {h["name"] for h in sysfs.hcas
            if h["name"] in names and h.get("pci_bridges") and h["pci_bridges"][0] in roots}


def _host_type(sysfs: SysfsFacts, gpus: list[dict[str, Any]], notes: list[str]) -> HostType:
    sockets = max(1, len(sysfs.packages))
    cores = len(set(sysfs.cpus.values())) or 1
    threads = max(1, round(len(sysfs.cpus) / cores))
    if cores % sockets:
        notes.append(f"{cores} cores do not split evenly over {sockets} sockets (some offline?); rounded "
                     f"down to {max(1, cores // sockets)} per socket: slurmctld marks a node configured with "
                     "more CPUs than slurmd counts invalid (\"Low socket*core*thread count\")")
    mem_kb = sum(n["memory_kb"] or 0 for n in sysfs.numa.values())
    if not mem_kb:
        notes.append("host memory unknown (no meminfo); memory_gb set to 1")
    names = Counter(g["name"] or "unknown" for g in gpus)
    model = names.most_common(1)[0][0] if gpus else "none"
    if len(names) > 1:
        notes.append(f"mixed GPU models {dict(names)}; the host type uses {model!r} (see the sidecar)")
    mems = [g["memory_bytes"] for g in gpus if g["memory_bytes"]]
    nvlink, nvswitches, _ = _nvlink(gpus, notes)
    nics, nic_gbps, chosen = _compute_nics(sysfs, notes, gpus)
    pcie = [g["pcie_gbps"] for g in gpus if g["pcie_gbps"]]
    if gpus and not pcie:
        notes.append(f"GPU PCIe link speed not in sysfs; pcie_gbps assumed {DEFAULT_PCIE_GBPS:g}")
    gpu_numa = [min(g["socket"], sockets - 1) for g in gpus]
    flags = ((_slug(model), bool(gpus)), ("nvlink", nvlink > 0), ("ib", _any_ib(sysfs, chosen)))
    features = [f for f, on in flags if on]
    gpu_mem = round(min(mems) / 2**30, 1) if mems else 0.0
    fields = dict(gpus=len(gpus), gpu_model=_model_name(model), gpu_memory_gb=gpu_mem,
                  sockets=sockets, cores_per_socket=max(1, cores // sockets), threads_per_core=threads,
                  memory_gb=_memory_gb(mem_kb), nvlink_gbps=nvlink,
                  nvswitches=nvswitches, pcie_gbps=min(pcie) if pcie else DEFAULT_PCIE_GBPS, nics=nics,
                  nic_gbps=nic_gbps, gpu_numa=gpu_numa or None, features=features)
    try:
        return HostType(**fields)
    except ValidationError as exc:  # a sysfs/NVML value no fabric file allows (damaged or fake tree)
        err = exc.errors(include_url=False)[0]
        field = ".".join(map(str, err["loc"]))
        raise ConfigError(f"discovered host type: {field} {err['msg'].lower()} (got {err.get('input')!r})",
                          hint="the sysfs tree or NVML gave a value no host has: check the tree "
                               "(--sysfs-root) or write the host type by hand") from None


def _memory_gb(mem_kb: int) -> float:
    """The host's memory in GiB as whole MiB (exact in a float): slurm.conf's RealMemory is then the
    MiB slurmd counts, never more (rounding up would make Slurm mark the node invalid: Low RealMemory)."""
    mib = mem_kb // 1024
    return mib / 1024 if mib else 1.0


def _model_name(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``H100-80GB-HBM3``."""
    words = name.replace("NVIDIA ", "").replace("Tesla ", "").split()
    return "-".join(words) or "unknown"


def _slug(model: str) -> str:
    """The model's feature name (``H100-80GB-HBM3`` → ``h100``), reduced to what a Slurm feature
    (and the fabric file's name rule) takes."""
    slug = re.sub(r"[^a-z0-9_.-]", "", _model_name(model).split("-")[0].lower()).lstrip("_.-")
    return slug or "gpu"


def _any_ib(sysfs: SysfsFacts, chosen: list[str]) -> bool:
    return any(p["link_layer"] == "InfiniBand" for h in sysfs.hcas if h["name"] in chosen for p in h["ports"])


def _facts(host: str, rec: dict[str, Any], why: str | None, gpus: list[dict[str, Any]], sysfs: SysfsFacts,
           notes: list[str]) -> dict[str, Any]:
    """The JSON sidecar: everything discovered that the YAML format has no place for."""
    _, _, switches = _nvlink(gpus, [])
    return {
        "format": SIDECAR_FORMAT, "version": 1, "host": host,
        "nvml": {"available": why is None, "reason": why,
                 "driver_version": _err_none(rec.get("driver_version"))},
        "gpus": gpus, "nvswitches": switches, "compute_nics": _compute_nics(sysfs, [], gpus)[2],
        "cpus": {"online": len(sysfs.cpus), "sockets": len(sysfs.packages),
                 "cores": len(set(sysfs.cpus.values())), **read_cpu_id(sysfs.root)},
        "numa_nodes": [{"node": n, "cpus": _cpulist(v["cpus"]), "memory_kb": v["memory_kb"],
                        "socket": sysfs.socket_of_node(n)} for n, v in sorted(sysfs.numa.items())],
        "hcas": [dict(h, socket=sysfs.socket_of_node(h["numa_node"])) for h in sysfs.hcas],
        "net": sysfs.net, "pci": _pci_facts(gpus, sysfs), "notes": notes,
    }


def _pci_facts(gpus: list[dict[str, Any]], sysfs: SysfsFacts) -> dict[str, dict[str, str]]:
    """sysfs's attributes (:meth:`SysfsFacts.pci_attrs`) of every GPU and HCA and the bridges above
    them, by bus id: what the host's NCCL XML writes of each ``<pci>``."""
    ids = {pci_sysfs_id(g["pci_bus_id"]) for g in gpus if g["pci_bus_id"]}
    ids |= {h["pci"] for h in sysfs.hcas if h["pci"]}
    ids |= {b for d in [*gpus, *sysfs.hcas] for b in d.get("pci_bridges") or []}
    return {bus: attrs for bus in sorted(ids) if (attrs := sysfs.pci_attrs(bus))}
