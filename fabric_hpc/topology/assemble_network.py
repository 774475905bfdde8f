"""The real network for an assembled fabric (``fabric topology assemble ... --network FILE``).

Discovery knows what is in each host but not how the hosts are cabled; Slurm's ``topology.conf`` /
``topology.yaml`` and ``ibnetdiscover`` output know the cabling but not the hosts. :func:`join_network`
imports the network file with the importers (:mod:`~fabric_hpc.topology.import_slurm`,
:mod:`~fabric_hpc.topology.import_ib`; nothing is parsed here), takes its ``network`` section and
host → leaf mapping, and puts them on the assembled hosts:

- host names are compared as slurmctld compares NodeNames (``node_conf.c``: an exact, case-sensitive
  match of the expanded host lists; ``n01`` is not ``n1``, ``dgx01`` not ``dgx01.example.com``); a
  mismatch names the near misses (case, domain suffix, zero padding);
- a discovered host the network file lacks is an error (its cabling is unknown); a network host that
  was not discovered is an error too, unless ``allow_missing``: then it is left out of the fabric
  (and of its network: leaf switches left without hosts go, and the switches above left without
  children), and a note names it;
- uplinks: an ibnetdiscover dump's own, from the link rates of each group's cables up (the real
  cables win: discovery knows the hosts' NICs, not the switches' cabling); elsewhere (topology.conf,
  topology.yaml, a virtual ``root``) non-blocking, from the discovered hosts' NICs;
- an NVLink domain whose hosts sit under several leaf groups (an NVL72 rack's trays normally share
  one) gets a warning; the fabric format keeps a domain inside one leaf group, so it becomes one
  domain per leaf group (``<domain>-<leaf>``), which placement treats as not NVLink-joined.

Public surface::

    join_network(spec, path, *, allow_missing=False) -> (FabricSpec, notes)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import compress, expand
from fabric_hpc.topology.spec import FabricSpec
from fabric_hpc.topology.spec_check import _unpadded, check_spec

#: The import kinds that describe a network (the others are CSV data sets of a whole cluster).
NETWORK_KINDS = ("topology-conf", "topology-yaml", "ibnetdiscover")
#: Names shown of a longer list in an error or note.
SHOWN = 5
NETWORK_HINT = ("give /etc/slurm/topology.conf (topology/tree), Slurm's topology.yaml, or the output of "
                "`ibnetdiscover`")
WARNING = "warning: "


def read_network(path: str | os.PathLike[str]) -> tuple[FabricSpec, str, dict[str, float]]:
    """(the imported fabric, its kind, the uplink per switch (GB/s) of its groups whose cables are
    known: an ibnetdiscover dump's) of a topology.conf, topology.yaml or ibnetdiscover file, kind
    detected as ``fabric topology import --kind auto`` does."""
    from fabric_hpc.topology.importers import detect_kind, import_csv, load_csv

    if not Path(path).exists():  # load_csv's hint is about the CSV data sets
        raise NotFoundError(f"--network file {os.fspath(path)!r} does not exist", hint=NETWORK_HINT)
    file = load_csv(path, what="--network file")
    try:
        kind: str | None = detect_kind(file)
    except ConfigError:
        kind = None
    if kind not in NETWORK_KINDS:
        raise ConfigError(f"--network {os.fspath(path)}: " + (f"a {kind} file, not" if kind else "not")
                          + " a network (Slurm topology.conf, topology.yaml or ibnetdiscover output)",
                          hint=NETWORK_HINT)
    if kind == "ibnetdiscover":
        from fabric_hpc.topology.import_ib import read_ibnetdiscover

        net, cabled = read_ibnetdiscover(file, count_nics=False)  # assemble keeps the hosts' nics
        return net, kind, cabled
    return import_csv(file, kind=kind), kind, {}


def join_network(spec: FabricSpec, path: str | os.PathLike[str], *,
                 allow_missing: bool = False) -> tuple[FabricSpec, list[str]]:
    """``spec`` (assembled hosts) with the network of ``path``; notes (warnings start
    ``warning: ``) say what was left out or split."""
    from fabric_hpc.validation import parse_model

    net_spec, kind, cabled = read_network(path)
    assert net_spec.network is not None  # the network importers always build one
    shown = os.fspath(path)
    leaf_of = {h: g.name for g in net_spec.network.groups if g.hosts for h in expand(g.hosts)}
    types = {h: e.type for e in spec.hosts for h in expand(e.names)}
    notes: list[str] = []
    missing = _match(list(types), leaf_of, shown, allow_missing)
    if missing:
        notes.append(f"--allow-missing: {_few(missing)} of {shown} {'was' if len(missing) == 1 else 'were'} "
                     "not discovered, left out of the fabric and its network (assemble again once "
                     "discovered: the exported topology.conf lacks them)")
    bandwidth = {h: spec.host_types[t].nics * spec.host_types[t].nic_gbps for h, t in types.items()}
    if idle := sorted(h for h, bw in bandwidth.items() if not bw):
        verb = "has" if len(idle) == 1 else "have"
        raise ConfigError(f"{_few(idle)} on a leaf switch of {shown} {verb} no NIC in discovery (nics: 0)",
                          hint="check the host's HCAs (ibstat: State Active) and discover it again, or "
                               "set nics/nic_gbps in the assembled fabric by hand")
    groups = _prune([g.model_dump() for g in net_spec.network.groups], set(missing))
    _non_blocking(groups, bandwidth, cabled)
    leaf_of = {h: g["name"] for g in groups if g.get("hosts") for h in expand(g["hosts"])}
    domains = _domains_in_leaves(spec, leaf_of, notes)
    data = spec.model_dump()
    data.update(nvlink_domains=domains, network={"levels": net_spec.network.levels, "groups": groups},
                description=_description(spec, net_spec, kind, shown, len(missing), bool(cabled)))
    out = parse_model(FabricSpec, data, source="fabric topology assemble --network")
    check_spec(out, source=f"the fabric assembled with the network of {shown}")
    return out, notes


def _few(names: list[str]) -> str:
    """``3 hosts (n[5-7])``; past :data:`SHOWN` names, the first ones and how many more."""
    more = f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else ""
    return f"{len(names):,} host{'' if len(names) == 1 else 's'} ({compress(names[:SHOWN])}{more})"


def _match(discovered: list[str], leaf_of: dict[str, str], path: str, allow_missing: bool) -> list[str]:
    """The network's hosts that were not discovered (sorted), when ``allow_missing``; else an error
    for those, and always one for discovered hosts the network lacks."""
    known = set(discovered)
    extra = sorted(h for h in discovered if h not in leaf_of)
    missing = sorted(h for h in leaf_of if h not in known)
    if extra:
        raise ConfigError(f"{_few(extra)} discovered but not in {path}" + _near(extra, missing)
                          + (f"; it lacks {_few(missing)} of the file" if missing else ""),
                          hint="name each host as slurm.conf's NodeName in both (discover --hostname NAME, "
                               "or fix the network file), add the host to the network file, or leave its "
                               "fragment out")
    if missing and not allow_missing:
        raise ConfigError(f"{_few(missing)} of {path} {'is' if len(missing) == 1 else 'are'} not discovered",
                          hint="discover them (fabric topology discover -o HOST.yaml on each) and give their "
                               "fragments too, or --allow-missing to leave them out of the fabric")
    return missing


def _near(extra: list[str], missing: list[str]) -> str:
    """``: 'dgx01' is 'DGX01' there (...)`` for the first discovered name that differs from a
    network name only in case, a domain suffix (on one side) or zero padding."""
    loose: dict[str, str] = {}  # lower case, numbers unpadded -> a network name
    short: dict[str, str] = {}  # a network name up to its first dot -> that name
    for m in missing:
        loose.update({m.lower(): m, _unpadded(m): m})
        if "." in m:
            short[m.split(".", 1)[0]] = m
    exact = set(missing)
    for h in extra:
        stem = h.split(".", 1)[0]
        twin = (next((loose[k] for k in (h.lower(), _unpadded(h)) if k in loose), None) or short.get(h)
                or (stem if stem != h and stem in exact else None))
        if twin is not None:
            return (f": {h!r} is {twin!r} there (Slurm compares host names exactly: case, domain and "
                    "zero padding included)")
    return ""


def _prune(groups: list[dict[str, Any]], missing: set[str]) -> list[dict[str, Any]]:
    """The groups without the ``missing`` hosts; groups left with neither hosts nor children go,
    and so do parents left without children."""
    for g in groups:
        if g.get("hosts") and missing:
            g["hosts"] = compress([h for h in expand(g["hosts"]) if h not in missing]) or None
    while empty := {g["name"] for g in groups if not g.get("hosts") and not g["children"]}:
        groups = [g for g in groups if g["name"] not in empty]
        for g in groups:
            g["children"] = [c for c in g["children"] if c not in empty]
    return groups


def _non_blocking(groups: list[dict[str, Any]], bandwidth: dict[str, float],
                  cabled: dict[str, float]) -> None:
    """Each group's ``uplink_gbps`` (where it has one): ``cabled``'s where its cables are known, else
    its share of the NIC bandwidth of all hosts below it, as the importers compute it (GB/s per
    switch)."""
    by_name = {g["name"]: g for g in groups}
    below: dict[str, float] = {}

    def total(name: str) -> float:  # at most 8 levels deep
        if name not in below:
            g = by_name[name]
            below[name] = sum(bandwidth[h] for h in expand(g["hosts"] or "")) if g.get("hosts") else 0.0
            below[name] += sum(total(c) for c in g["children"])
        return below[name]

    for g in groups:
        if g.get("uplink_gbps") is not None:
            g["uplink_gbps"] = cabled.get(g["name"]) or total(g["name"]) / g["switches"]


def _domains_in_leaves(spec: FabricSpec, leaf_of: dict[str, str], notes: list[str]) -> list[dict[str, Any]]:
    """The NVLink domains, each inside one leaf group: a domain over several is split per leaf
    group, with a warning."""
    from fabric_hpc.topology.assemble import NVSWITCHES_PER_72_GPUS

    gpus = {h: spec.host_types[e.type].gpus for e in spec.hosts for h in expand(e.names)}
    out: list[dict[str, Any]] = []
    for d in spec.nvlink_domains:
        parts: dict[str, list[str]] = {}
        for h in expand(d.hosts):
            parts.setdefault(leaf_of[h], []).append(h)
        if len(parts) == 1:
            out.append(d.model_dump())
            continue
        split = [d.model_copy(update={"name": f"{d.name}-{leaf}", "hosts": compress(hs), "nvswitches":
                                      NVSWITCHES_PER_72_GPUS * math.ceil(sum(gpus[h] for h in hs) / 72)})
                 for leaf, hs in parts.items()]
        where = "; ".join(f"{p.hosts} on {leaf}" for p, leaf in zip(split[:4], parts))
        notes.append(f"{WARNING}NVLink domain {d.name}: its hosts are under {len(parts)} leaf switch groups "
                     f"({where}{'; ...' if len(parts) > 4 else ''}); an NVL72 rack's trays normally share "
                     "one: check the cabling and the network file. The fabric keeps a domain under one "
                     f"leaf group, so it has {len(parts)} domains {d.name}-<leaf> (placement will not use "
                     "NVLink between them)")
        out += [p.model_dump() for p in split]
    return out


def _description(spec: FabricSpec, net: FabricSpec, kind: str, path: str, left_out: int,
                 cabled: bool) -> str:
    """The assembled fabric's description, with where its network came from."""
    dropped = net.description.partition("; empty switches left out: ")[2]
    uplinks = "uplinks from the link rates of its cables" if cabled else "uplinks assumed non-blocking"
    return (f"{spec.description}; network from {kind} {Path(path).name} ({uplinks})"
            + (f"; {left_out:,} hosts of it not discovered, left out" if left_out else "")
            + (f"; empty switches left out: {dropped}" if dropped else ""))
