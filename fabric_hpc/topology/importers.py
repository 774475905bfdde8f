"""Importers of real cluster data into fabric descriptions (:class:`FabricSpec`).

Public functions (each returns a validated ``FabricSpec``; the CLI ``fabric topology import`` calls
:func:`import_csv`)::

    import_lingjun(csv_path, *, host_type=None, prefix="lj", oversubscription=1.0,
                   name="alibaba-lingjun-2023", hostmap_path=None) -> FabricSpec
    import_node_list(csv_path, *, kind="auto", hosts_per_leaf=None, nic_gbps=25.0,
                     memory_gb_per_cpu=4.0, name=None) -> FabricSpec
    import_csv(csv_path, *, kind="auto", **options) -> FabricSpec   # dispatch on the CSV header
    lingjun_host_map(csv_path, *, prefix="lj") -> list[tuple[str, str]]   # (host name, ip hash)
    write_host_map(rows, path) -> Path                                    # sidecar CSV "host,ip"

Kinds: ``lingjun`` (``ip,DSW,PSW,ASW``), ``openb`` (``sn,cpu_milli,memory_mib,gpu,model``) and
``spot2026`` (``gpu_model,gpu_capacity_num,cpu_num,node_name``); :func:`import_csv` also dispatches
Slurm's ``topology-conf``/``topology-yaml`` (``import_slurm``) and ``ibnetdiscover`` (``import_ib``).
The data say nothing about what is inside a Lingjun host, nor about the network of the node lists;
every assumption made to fill the gaps is listed in ``docs/topology-sources.md`` and can be overridden
by the arguments above.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import NAME, compress, slurm_renames
from fabric_hpc.topology.spec import FabricSpec, HostType
from fabric_hpc.topology.spec_check import _RENAMED, check_spec

PathLike = str | os.PathLike[str]

HEADERS: dict[str, tuple[str, ...]] = {
    "lingjun": ("ip", "DSW", "PSW", "ASW"),
    "openb": ("sn", "cpu_milli", "memory_mib", "gpu", "model"),
    "spot2026": ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name"),
}
#: Every import kind: the CSV data sets, Slurm's topology.conf and topology.yaml (``import_slurm``),
#: ibnetdiscover output (``import_ib``).
KINDS = (*HEADERS, "topology-conf", "topology-yaml", "ibnetdiscover")

#: Assumed Lingjun host (the dataset gives none): an HGX H800 8-GPU server with one 400 Gb/s NIC per
#: GPU, as Alibaba's HPN paper (SIGCOMM'24) describes its LLM-training hosts. Override with host_type=.
LINGJUN_HOST = HostType(gpus=8, gpu_model="H800-SXM5-80GB", gpu_memory_gb=80, sockets=2, cores_per_socket=48,
                        threads_per_core=2, memory_gb=2048, nvlink_gbps=400, nvswitches=4, pcie_gbps=64,
                        nics=8, nic_gbps=50.0, features=["lingjun", "assumed-host"])

#: GPU facts by model name as written in the Alibaba node lists: (memory GiB, PCIe GB/s, NVLink GB/s
#: and NVSwitches of an 8-GPU SXM board). 0 memory = unknown (anonymised models G2, G3, GPU-series-*).
#: NVLink is assumed only where the model name says SXM and the host has 8 GPUs (an HGX board).
GPU_FACTS: dict[str, tuple[float, float, float, int]] = {
    "P100": (16, 16, 0, 0), "T4": (16, 16, 0, 0), "V100M16": (16, 16, 0, 0), "V100M32": (32, 16, 0, 0),
    "A10": (24, 32, 0, 0), "A100-SXM4-80GB": (80, 32, 600, 6), "A800-SXM4-80GB": (80, 32, 400, 6),
    "H800": (80, 64, 0, 0),
}
_UNKNOWN_GPU = (0.0, 32.0, 0.0, 0)


# -- CSV reading ---------------------------------------------------------------------------------
#: Largest CSV an importer reads (bytes): the shipped Alibaba files are 42 to 78 KB, and a Lingjun
#: file of 131,072 GPUs (spec.MAX_GPUS) is about 2.3 MB. Checked before the file is read.
MAX_CSV_BYTES = 16 << 20
#: Where the public CSV files are (data/ is in the source tree only, not in the wheel).
CSV_SOURCES = ("the public CSVs are in data/topologies/ of fabric-hpc's source tree (not in the wheel; "
               "data/README.md there), or at https://github.com/alibaba/alibaba-lingjun-dataset-2023 "
               "(data/topo.csv) and https://github.com/alibaba/clusterdata (openb, spot2026 node lists)")


class CsvFile(os.PathLike[str]):
    """A CSV read once (:func:`load_csv`): importers given one do not read the file again. It stands
    for its path in messages (``str``) and wherever a path goes (``os.fspath``)."""

    def __init__(self, path: PathLike, lines: list[str]) -> None:
        self.path, self.lines = Path(path), lines

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)


def load_csv(path: PathLike | CsvFile, *, what: str = "file", missing_hint: str = CSV_SOURCES) -> CsvFile:
    """The file's lines, read once through the input boundary (regular file, at most
    :data:`MAX_CSV_BYTES`, UTF-8), without the byte order mark Excel's "CSV UTF-8" puts first (it is
    no part of the first column's name). ``missing_hint``: the fix when it does not exist."""
    from fabric_hpc.inputs import check_path, read_text

    if isinstance(path, CsvFile):
        return path
    if not Path(path).exists():
        raise NotFoundError(f"{what} {str(path)!r} does not exist", hint=missing_hint)
    checked = check_path(path, what="import file")
    size = checked.stat().st_size if checked.is_file() else 0
    if size > MAX_CSV_BYTES:  # before reading: a 200 MB file took 4 GB and 30 s to be refused later
        raise ConfigError(f"import file {str(path)!r} is {size:,} bytes, over the import limit of "
                          f"{MAX_CSV_BYTES:,} (16 MiB; the Alibaba files are under 100 KB)",
                          hint="check that it is the right file, or split the cluster into several imports")
    text = read_text(checked, what="import file", limit=MAX_CSV_BYTES)
    return CsvFile(path, text.removeprefix("\ufeff").splitlines(keepends=True))


def _read_rows(path: PathLike | CsvFile, kind: str) -> list[tuple[int, dict[str, str]]]:
    """Rows with their 1-based file line numbers; the header must be exactly the kind's columns."""
    path = load_csv(path, what=f"{kind} file")
    try:
        reader = csv.reader(path.lines)
        header = tuple(h.strip() for h in next(reader, []))
        if header != HEADERS[kind]:
            raise ConfigError(f"{path}:1: header {','.join(header) or '(empty)'} is not a {kind} file",
                              hint=f"a {kind} file starts with the columns {','.join(HEADERS[kind])}")
        rows = []
        for line, values in enumerate(reader, start=2):
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ConfigError(f"{path}:{line}: {len(values)} columns, expected {len(header)}",
                                  hint=f"columns are {','.join(header)}")
            rows.append((line, {k: v.strip() for k, v in zip(header, values, strict=True)}))
    except csv.Error as exc:
        raise ConfigError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no data rows", hint="the file holds only a header")
    return rows


def _int(path: PathLike, line: int, row: dict[str, str], column: str, minimum: int = 0) -> int:
    try:
        value = int(row[column])
    except ValueError:
        raise ConfigError(f"{path}:{line}: column {column!r} must be an integer, "
                          f"got {row[column]!r}") from None
    if value < minimum:
        raise ConfigError(f"{path}:{line}: column {column!r} must be ≥ {minimum}, got {value}")
    return value


def detect_kind(path: PathLike) -> str:
    """The importer kind of a CSV file (a path or a :class:`CsvFile`), from its header line."""
    from fabric_hpc.topology import import_ib, import_slurm

    path = load_csv(path)
    if slurm_kind := import_slurm.looks_like(path.lines):
        return slurm_kind
    if import_ib.looks_like(path.lines):
        return import_ib.KIND
    import_ib.refuse_other_forms(path.lines, str(path))
    try:
        header = tuple(h.strip() for h in next(csv.reader(path.lines), []))
    except csv.Error as exc:
        raise ConfigError(f"{path}:1: not valid CSV ({exc})") from None
    for kind, columns in HEADERS.items():
        if header == columns:
            return kind
    known = "; ".join(f"{k}: {','.join(c)}" for k, c in HEADERS.items())
    raise ConfigError(f"{path}:1: unknown CSV header {','.join(header)[:80]!r}, and no topology.conf "
                      "SwitchName= line or ibnetdiscover Switch block",
                      hint="known formats: Slurm topology.conf/topology.yaml, ibnetdiscover output; "
                           f"CSV {known}")


# -- Lingjun three-tier Clos ---------------------------------------------------------------------
def _natural(text: str) -> tuple[Any, ...]:
    parts = re.split(r"(\d+)", text, flags=re.ASCII)
    return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)


def lingjun_host_map(csv_path: PathLike, *, prefix: str = "lj") -> list[tuple[str, str]]:
    """``(host name, ip hash)`` for every row, in file order: row ``i`` → ``<prefix><i:04d>``."""
    return _host_names(csv_path, _read_rows(csv_path, "lingjun"), prefix)


def _host_names(csv_path: PathLike, rows: list[tuple[int, dict[str, str]]],
                prefix: str) -> list[tuple[str, str]]:
    width = max(4, len(str(len(rows))))
    seen: dict[str, int] = {}
    out = []
    for i, (line, row) in enumerate(rows, start=1):
        if row["ip"] in seen:
            raise ConfigError(f"{csv_path}:{line}: host {row['ip'][:12]}… already listed "
                              f"at line {seen[row['ip']]}")
        seen[row["ip"]] = line
        out.append((f"{prefix}{i:0{width}d}", row["ip"]))
    return out


def write_host_map(rows: Iterable[tuple[str, str]], path: PathLike) -> Path:
    """Write the sidecar CSV ``host,ip`` that maps generated host names back to the data's ids."""
    from fabric_hpc.inputs import output_path

    path = output_path(path, what="host map")
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["host", "ip"])
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def import_lingjun(csv_path: PathLike, *, host_type: HostType | None = None, prefix: str = "lj",
                   oversubscription: float = 1.0, name: str = "alibaba-lingjun-2023",
                   hostmap_path: PathLike | None = None) -> FabricSpec:
    """The Lingjun Clos: ToR = (PSW, ASW) pair (ASW names repeat under different PSWs), PSW =
    aggregation, DSW = core. Hosts are ``lj0001…`` in file order; ``hostmap_path`` writes the map."""
    if not oversubscription >= 1.0:
        raise ConfigError(f"oversubscription={oversubscription} must be ≥ 1 (1 = non-blocking)")
    ht = host_type or LINGJUN_HOST
    if ht.nics < 1:
        raise ConfigError("the Lingjun host type needs at least one NIC (hosts sit on the network)")
    rows = _read_rows(csv_path, "lingjun")
    names = _host_names(csv_path, rows, prefix)
    tors: dict[tuple[str, str], list[str]] = {}
    spelled: dict[tuple[str, str, str], tuple[str, int]] = {}
    psw_of_dsw: dict[str, list[str]] = {}
    dsw_of_psw: dict[str, str] = {}
    made: dict[str, tuple[str, int]] = {}  # fabric group name -> (the data's switch, its first line)
    for (line, row), (host, _) in zip(rows, names, strict=True):
        dsw, psw = row["DSW"], row["PSW"]
        if not (dsw and psw and row["ASW"]):
            raise ConfigError(f"{csv_path}:{line}: empty switch name",
                              hint="every row names DSW, PSW and ASW")
        for column, under in (("DSW", ""), ("PSW", ""), ("ASW", psw.lower())):  # ASW names repeat under PSWs
            _switch_name(csv_path, line, column, row[column], spelled, under)
        _group_names(csv_path, line, row, made)
        if dsw_of_psw.setdefault(psw, dsw) != dsw:
            raise ConfigError(f"{csv_path}:{line}: PSW {psw} is under DSW {dsw_of_psw[psw]} and {dsw}",
                              hint="the importer expects a tree: one core switch above each PSW")
        psw_of_dsw.setdefault(dsw, [])
        if psw not in psw_of_dsw[dsw]:
            psw_of_dsw[dsw].append(psw)
        tors.setdefault((psw, row["ASW"]), []).append(host)
    if len(psw_of_dsw) > 1 and "root" in made:  # several cores go under a virtual root switch
        what, at = made["root"]
        raise ConfigError(f"{csv_path}:{at}: {what} would be the fabric switch 'root', the name the importer "
                          f"gives the switch above the {len(psw_of_dsw)} DSWs",
                          hint="rename that switch in the CSV (e.g. root1)")
    groups, levels = _clos_groups(tors, psw_of_dsw, ht.nics * ht.nic_gbps / oversubscription)
    if hostmap_path is not None:
        write_host_map(names, hostmap_path)
    description = (f"Alibaba Lingjun 2023 three-tier Clos (Crux, SIGCOMM'24): {len(rows)} hosts, "
                   f"{len(tors)} ToRs, {len(dsw_of_psw)} PSWs, {len(psw_of_dsw)} DSW(s). Host contents "
                   f"are ASSUMED (the data has none); host i is row i of {Path(csv_path).name} "
                   "(see docs/topology-sources.md)")
    return _finish({"fabric": 1, "name": name, "description": description,
                    "host_types": {"lingjun-host": ht.model_dump()},
                    "hosts": [{"names": compress(h for h, _ in names), "type": "lingjun-host"}],
                    "network": {"levels": levels, "groups": groups}}, str(csv_path))


def _switch_name(path: PathLike, line: int, column: str, name: str,
                 spelled: dict[tuple[str, str, str], tuple[str, int]], under: str) -> None:
    """A switch name of the data becomes a group name (lower case) of the fabric and a SwitchName of
    Slurm's topology.conf: it must be a valid name, and not another switch's name in other case."""
    if not NAME.match(name):
        raise ConfigError(f"{path}:{line}: {column} switch name {name[:60]!r} is not a valid switch name "
                          "(letters, digits, '_', '.', '-'; no spaces, '#', '=', ',', '/' or quotes)",
                          hint=f"rename that switch in column {column} (e.g. {_plain(name)!r})")
    first, at = spelled.setdefault((column, under, name.lower()), (name, line))
    if first != name:
        raise ConfigError(f"{path}:{line}: {column} switch {name!r} differs from {first!r} (line {at}) only "
                          "in case; the fabric's switch names are lower case, so they would be one switch",
                          hint=f"spell one switch one way in column {column}, or give the two distinct names")


def _group_names(path: PathLike, line: int, row: dict[str, str], made: dict[str, tuple[str, int]]) -> None:
    """The fabric switches of one row (ToR ``<psw>-<asw>``, PSW, DSW; lower case) must each be one
    switch of the data: ``(P1-S1, S1)`` and ``(P1, S1-S1)`` would both be ToR ``p1-s1-s1``."""
    dsw, psw, asw = row["DSW"], row["PSW"], row["ASW"]
    for name, what in ((f"{psw}-{asw}".lower(), f"the ToR of PSW {psw!r} and ASW {asw!r}"),
                       (psw.lower(), f"PSW {psw!r}"), (dsw.lower(), f"DSW {dsw!r}")):
        first, at = made.setdefault(name, (what, line))
        if first.lower() != what.lower():
            raise ConfigError(
                f"{path}:{line}: {what} and, on line {at}, {first} would both become the fabric switch "
                f"{name!r}: the importer names a ToR '<PSW>-<ASW>' and every switch in lower case",
                hint=f"rename one of the two in the CSV (line {at} or {line}), e.g. with '_' instead of '-' "
                     "in one switch name, so the names stay apart")


def _plain(name: str) -> str:
    """``name`` with every run of characters a switch name cannot hold replaced by '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.") or "S1"


def _clos_groups(tors: dict[tuple[str, str], list[str]], psw_of_dsw: dict[str, list[str]],
                 host_up: float) -> tuple[list[dict[str, Any]], list[str]]:
    """ToR, aggregation and core groups; uplinks: ToR = its hosts' NIC bandwidth (divided by the
    oversubscription), above that non-blocking (a PSW's uplink = the sum of its ToRs' uplinks)."""
    tor_groups: dict[str, list[dict[str, Any]]] = {}
    for psw, asw in sorted(tors, key=lambda k: (_natural(k[0]), _natural(k[1]))):
        hosts = tors[(psw, asw)]
        tor_groups.setdefault(psw, []).append({"name": f"{psw}-{asw}".lower(), "level": "tor", "switches": 1,
                                               "hosts": compress(hosts), "uplink_gbps": len(hosts) * host_up})
    groups = [g for psw in sorted(tor_groups, key=_natural) for g in tor_groups[psw]]
    psw_up = {psw: sum(g["uplink_gbps"] for g in gs) for psw, gs in tor_groups.items()}
    dsws = sorted(psw_of_dsw, key=_natural)
    for dsw in dsws:
        for psw in sorted(psw_of_dsw[dsw], key=_natural):
            groups.append({"name": psw.lower(), "level": "aggregation", "switches": 1,
                           "children": [g["name"] for g in tor_groups[psw]], "uplink_gbps": psw_up[psw]})
    levels = ["tor", "aggregation", "core"]
    for dsw in dsws:
        core: dict[str, Any] = {"name": dsw.lower(), "level": "core", "switches": 1,
                                "children": [p.lower() for p in sorted(psw_of_dsw[dsw], key=_natural)]}
        if len(dsws) > 1:  # the spec wants one tree: several core switches go under a virtual root
            core["uplink_gbps"] = sum(psw_up[p] for p in psw_of_dsw[dsw])
        groups.append(core)
    if len(dsws) > 1:
        levels.append("root")
        groups.append({"name": "root", "level": "root", "switches": 1, "children": [d.lower() for d in dsws]})
    return groups, levels


# -- Alibaba node lists --------------------------------------------------------------------------
def _openb_node(path: PathLike, line: int, row: dict[str, str], _: float) -> tuple[str, str, int, int, float]:
    cpus = _int(path, line, row, "cpu_milli", 1000) // 1000
    memory = _int(path, line, row, "memory_mib", 1) / 1024
    return row["sn"], row["model"] or "none", _int(path, line, row, "gpu"), cpus, memory


def _spot_node(path: PathLike, line: int, row: dict[str, str],
               gb_per_cpu: float) -> tuple[str, str, int, int, float]:
    number = _int(path, line, row, "node_name")
    cpus = _int(path, line, row, "cpu_num", 1)
    return f"spot{number:04d}", row["gpu_model"] or "none", _int(path, line, row, "gpu_capacity_num"), cpus, \
        cpus * gb_per_cpu


_NODE_READERS: dict[str, Callable[..., tuple[str, str, int, int, float]]] = {
    "openb": _openb_node, "spot2026": _spot_node}
_NODE_NAMES = {"openb": "alibaba-openb-2023", "spot2026": "alibaba-spot-2026"}


def _node_host_type(model: str, gpus: int, cpus: int, memory_gb: float, nic_gbps: float | None) -> HostType:
    mem, pcie, nvlink, nvswitches = GPU_FACTS.get(model, _UNKNOWN_GPU)
    if not ("SXM" in model and gpus == 8):
        nvlink, nvswitches = 0.0, 0
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "gpu"
    return HostType(gpus=gpus, gpu_model=model if gpus else "none", gpu_memory_gb=mem if gpus else 0.0,
                    sockets=1, cores_per_socket=cpus, threads_per_core=1, memory_gb=round(memory_gb, 3),
                    nvlink_gbps=nvlink, nvswitches=nvswitches, pcie_gbps=pcie,
                    nics=1 if nic_gbps else 0, nic_gbps=nic_gbps or 0.0, features=[slug] if gpus else [])


def import_node_list(csv_path: PathLike, *, kind: str = "auto", hosts_per_leaf: int | None = None,
                     nic_gbps: float = 25.0, memory_gb_per_cpu: float = 4.0,
                     name: str | None = None) -> FabricSpec:
    """An Alibaba node list as heterogeneous hosts: one host type per distinct (model, GPUs, CPUs,
    memory). No network by default (the data has none); ``hosts_per_leaf=N`` adds a flat
    leaf/spine tree of N hosts per leaf in file order, one NIC of ``nic_gbps`` GB/s per host."""
    csv_path = load_csv(csv_path)
    kind = detect_kind(csv_path) if kind == "auto" else kind
    if kind not in _NODE_READERS:
        raise ConfigError(f"unknown node-list kind {kind!r}",
                          hint=f"use one of: auto, {', '.join(_NODE_READERS)}")
    if hosts_per_leaf is not None and hosts_per_leaf < 1:
        raise ConfigError(f"hosts_per_leaf={hosts_per_leaf} must be ≥ 1")
    if hosts_per_leaf is not None and not nic_gbps > 0:
        raise ConfigError(f"nic_gbps={nic_gbps} must be > 0 when hosts are on a network")
    if not memory_gb_per_cpu > 0:
        raise ConfigError(f"memory_gb_per_cpu={memory_gb_per_cpu} must be > 0")
    types: dict[str, HostType] = {}
    members: dict[str, list[str]] = {}
    order: list[str] = []
    seen: dict[str, int] = {}
    for line, row in _read_rows(csv_path, kind):
        host, model, gpus, cpus, memory = _NODE_READERS[kind](csv_path, line, row, memory_gb_per_cpu)
        if not NAME.match(host):
            raise ConfigError(f"{csv_path}:{line}: host name {host!r} is not a valid host name",
                              hint="ASCII letters, digits, '_', '.', '-' only (a Slurm NodeName)")
        if slurm_renames(host):  # with the line: the spec check later would name only hosts.0.names
            raise ConfigError(f"{csv_path}:{line}: " + _RENAMED.format(what="host name", name=host[:60]),
                              hint="fix or drop that row")
        if host in seen:
            raise ConfigError(f"{csv_path}:{line}: host {host!r} already listed at line {seen[host]}")
        seen[host] = line
        try:
            ht = _node_host_type(model, gpus, cpus, memory, nic_gbps if hosts_per_leaf else None)
        except ValidationError as exc:  # a number no host can have (e.g. 100,000 GPUs)
            err = exc.errors(include_url=False)[0]
            field = ".".join(map(str, err["loc"]))
            raise ConfigError(f"{csv_path}:{line}: host {host!r}: {field} {err['msg'].lower()} "
                              f"(got {err.get('input')!r})", hint="fix or drop that row") from None
        tname = f"{ht.features[0] if ht.features else 'cpu'}-{gpus}g-{cpus}c-{round(memory):d}g"
        types[tname] = ht
        members.setdefault(tname, []).append(host)
        order.append(host)
    data: dict[str, Any] = {
        "fabric": 1, "name": name or _NODE_NAMES[kind],
        "description": (f"Alibaba {kind} node list {Path(csv_path).name}: {len(order)} hosts, "
                        f"{len(types)} host types; CPUs as one socket, NVLink/NICs/memory where unknown "
                        "ASSUMED (see docs/topology-sources.md)"),
        "host_types": {k: v.model_dump() for k, v in types.items()},
        "hosts": [{"names": compress(hs), "type": t} for t, hs in members.items()],
    }
    if hosts_per_leaf:
        data["network"] = _flat_network(order, hosts_per_leaf, nic_gbps)
    return _finish(data, str(csv_path))


def _flat_network(hosts: list[str], per_leaf: int, nic_gbps: float) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    width = max(3, len(str(-(-len(hosts) // per_leaf))))
    for n, start in enumerate(range(0, len(hosts), per_leaf), start=1):
        chunk = hosts[start:start + per_leaf]
        groups.append({"name": f"leaf{n:0{width}d}", "level": "leaf", "switches": 1, "hosts": compress(chunk),
                       "uplink_gbps": len(chunk) * nic_gbps})
    groups.append({"name": "spine", "level": "spine", "switches": 1, "children": [g["name"] for g in groups]})
    return {"levels": ["leaf", "spine"], "groups": groups}


# -- dispatch ------------------------------------------------------------------------------------
def import_csv(csv_path: PathLike, *, kind: str = "auto", **options: Any) -> FabricSpec:
    """Import any supported CSV; ``kind`` ``auto`` reads the header. Options go to the importer."""
    csv_path = load_csv(csv_path)  # read once: the header, then the rows
    kind = detect_kind(csv_path) if kind == "auto" else kind
    if kind == "lingjun":
        return import_lingjun(csv_path, **options)
    if kind in _NODE_READERS:
        return import_node_list(csv_path, kind=kind, **options)
    if kind in ("topology-conf", "topology-yaml"):
        from fabric_hpc.topology.import_slurm import import_topology_conf

        return import_topology_conf(csv_path, **options)
    if kind == "ibnetdiscover":
        from fabric_hpc.topology.import_ib import import_ibnetdiscover

        return import_ibnetdiscover(csv_path, **options)
    raise ConfigError(f"unknown import kind {kind!r}", hint=f"use one of: auto, {', '.join(KINDS)}")


def _finish(data: dict[str, Any], source: str) -> FabricSpec:
    """The validated spec of imported data; a value the schema refuses (a name built from the data,
    an option out of range) is a ConfigError naming it, never pydantic's own report."""
    from fabric_hpc.validation import parse_model

    spec = parse_model(FabricSpec, data, source=source,
                       hint="fix that value in the data, or the import option it came from")
    check_spec(spec, source=source)
    return spec


def gpu_count(spec: FabricSpec) -> int:
    """Total GPUs of a spec, without building the graph (used by tests and summaries)."""
    from fabric_hpc.hostlist import expand

    return sum(spec.host_types[e.type].gpus * len(expand(e.names)) for e in spec.hosts)


def type_counts(spec: FabricSpec) -> Counter[str]:
    """Hosts per host type."""
    from fabric_hpc.hostlist import expand

    return Counter({e.type: len(expand(e.names)) for e in spec.hosts})
