"""Assemble one fabric from many hosts' discovery fragments (``fabric topology assemble``).

Each input is what ``fabric topology discover -o HOST.yaml`` wrote: the one-host fragment and its
sidecar ``HOST.facts.json``. Identical host types become one (the smallest ``memory_gb`` of the
hosts, so slurm.conf's RealMemory never exceeds what slurmd counts); hosts whose GPUs registered in
the same multi-node NVLink fabric clique (NVML ``<clusterUuid>.<cliqueId>``, see
:mod:`~fabric_hpc.topology.mnnvl`) form one ``nvlink_domains`` entry named by that id. Refused, each
with a one-line error naming the host and the fix: a host given twice, a fragment without its
sidecar (or of another host), a sidecar whose GPU count is not the fragment's, a GPU whose fabric
registration is not complete, a host whose GPUs are in two cliques (or only some in one), a domain
whose hosts have different GPU counts or more GPUs than one NVLink domain joins. Public surface::

    assemble(paths, *, name="assembled") -> (FabricSpec, notes)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import NAME, compress, expand
from fabric_hpc.inputs import check_path, read_json, read_text
from fabric_hpc.topology.discover import SIDECAR_FORMAT, facts_path
from fabric_hpc.topology.io import parse_spec
from fabric_hpc.topology.nvml_recording import ERROR_FUNCTION_NOT_FOUND
from fabric_hpc.topology.spec import MAX_NVLINK_DOMAIN_GPUS, FabricSpec, HostType
from fabric_hpc.topology.spec_check import check_spec
from fabric_hpc.validation import parse_model

#: NVSwitch chips per 72 GPUs of a multi-host domain (GB200/GB300 NVL72: 9 switch trays x 2 chips).
NVSWITCHES_PER_72_GPUS = 18
MAX_FRAGMENT_BYTES = 1 << 20
FIX_FABRIC = ("fix the NVLink fabric on that host (`nvidia-smi -q` Fabric State/Status; nvidia-imex, "
              "nvidia-fabricmanager) and discover it again, or leave its fragment out")
Hosts = dict[str, tuple[HostType, str | None, str]]  # host -> (its type, its NVLink domain, its fragment)


def assemble(paths: list[str | os.PathLike[str]], *, name: str = "assembled") -> tuple[FabricSpec, list[str]]:
    """One fabric of the hosts in ``paths`` (discovery fragments), its multi-host NVLink domains
    from the sidecars' NVML fabric cliques; notes say what was merged."""
    if not paths:
        raise ConfigError("no discovery fragments given",
                          hint="fabric topology assemble HOST.yaml ... (the files that fabric topology "
                               "discover -o wrote)")
    hosts: Hosts = {}
    for path in _fragments(paths):
        host, ht, domain = _read_fragment(path)
        if host in hosts:
            raise ConfigError(f"host {host!r} is in two fragments: {hosts[host][2]} and {os.fspath(path)}",
                              hint="give each host's fragment once")
        hosts[host] = (ht, domain, os.fspath(path))
    domains: dict[str, list[str]] = {}
    for host, (_, domain, _) in hosts.items():
        if domain:
            domains.setdefault(domain, []).append(host)
    notes: list[str] = []
    nvl = [_domain(d, members, hosts) for d, members in domains.items()]
    types, entries = _host_types({h: (ht.model_copy(update={"nvswitches": 0}) if d else ht)
                                  for h, (ht, d, _) in hosts.items()}, notes)
    data = {"fabric": 1, "name": name,
            "description": f"assembled by fabric topology assemble from {len(hosts)} discovered hosts",
            "host_types": types, "hosts": entries, "nvlink_domains": nvl}
    spec = parse_model(FabricSpec, data, source="fabric topology assemble")
    check_spec(spec, source=f"the fabric assembled from {len(hosts)} fragments")
    notes.extend(f"NVLink domain {d['name']}: {d['hosts']} ({_gpus(d, hosts)} GPUs)" for d in nvl)
    return spec, notes


def _fragments(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """The fragments: each file given, and a directory's ``*.yaml`` files (in name order)."""
    out: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.glob("*.yaml") if p.is_file())
            if not found:
                raise NotFoundError(f"directory {os.fspath(given)!r} has no *.yaml discovery fragment",
                                    hint="give the directory where fabric topology discover -o "
                                         "wrote HOST.yaml")
            out += found
            continue
        if not given.exists():
            raise NotFoundError(f"discovery fragment {os.fspath(given)!r} does not exist",
                                hint="give the files fabric topology discover -o HOST.yaml wrote")
        if given.name.lower().endswith(".json"):
            yaml_name = given.name[:-len(".json")].removesuffix(".facts") + ".yaml"
            raise ConfigError(f"{os.fspath(given)!r} is JSON: give the host's fragment (YAML); its sidecar "
                              "<name>.facts.json is read from beside it",
                              hint=f"give {os.fspath(given.with_name(yaml_name))}")
        out.append(given)
    return out


def _read_fragment(path: Path) -> tuple[str, HostType, str | None]:
    """(host, host type, NVLink domain) of one fragment and its sidecar, checked against each other."""
    check_path(path, what="discovery fragment")
    spec, lines = parse_spec(read_text(path, what="discovery fragment", limit=MAX_FRAGMENT_BYTES),
                             source=os.fspath(path))
    check_spec(spec, source=os.fspath(path), locate=lines)
    names = [n for e in spec.hosts for n in expand(e.names)]
    if len(names) != 1 or spec.nvlink_domains or spec.network is not None:
        raise ConfigError(f"{path}: not a one-host discovery fragment ({len(names)} hosts"
                          + (", nvlink_domains" if spec.nvlink_domains else "")
                          + (", a network" if spec.network else "") + ")",
                          hint="give the files fabric topology discover -o HOST.yaml wrote, one per host")
    host, ht = names[0], spec.host_types[spec.hosts[0].type]
    side = facts_path(path)
    if not side.exists():
        raise NotFoundError(f"{path}: its sidecar {os.fspath(side)!r} (GPU ids, NVLink fabric clique) does "
                            "not exist", hint="keep the .facts.json that fabric topology discover -o writes "
                                              "beside the fragment, or discover the host again")
    facts = read_json(side, what="discovery sidecar", limit=16 * MAX_FRAGMENT_BYTES)
    if not isinstance(facts, dict) or facts.get("format") != SIDECAR_FORMAT or facts.get("host") != host \
            or not isinstance(facts.get("gpus"), list):
        raise ConfigError(f"{side}: not the discovery sidecar of host {host!r} (format {SIDECAR_FORMAT!r})",
                          hint="keep each fragment with the .facts.json discovery wrote beside it")
    if len(facts["gpus"]) != ht.gpus:
        raise ConfigError(f"{path}: host {host!r} has gpus: {ht.gpus} but its sidecar lists "
                          f"{len(facts['gpus'])} GPUs (the fragment was edited, or is of another discovery)",
                          hint="discover the host again (fabric topology discover -o ...)")
    return host, ht, _host_clique(host, facts["gpus"])


def _host_clique(host: str, gpus: list[Any]) -> str | None:
    """The one NVLink domain of the host's GPUs; an error when only some GPUs, or GPUs of two
    cliques, or a GPU whose fabric registration did not complete, are found."""
    fabric = [(g.get("index", i), _fabric(g.get("fabric")))
              for i, g in enumerate(gpus) if isinstance(g, dict)]
    broken = [(i, f) for i, f in fabric if isinstance(f, dict) and not f.get("domain")
              and (f.get("error") or f.get("state") != "completed" or f.get("status") != 0)]
    if broken:
        i, f = broken[0]
        why = f.get("error") or (f"registration {f.get('state')}" if f.get("state") != "completed"
                                 else f"registration status NVML error {f.get('status')}")
        raise ConfigError(f"host {host!r}: GPU {i} is not in its NVLink fabric ({why})"
                          + (f", nor are {len(broken) - 1} more GPUs" if len(broken) > 1 else ""),
                          hint=FIX_FABRIC)
    of: dict[str | None, list[int]] = {}
    for i, f in fabric:
        domain = f.get("domain") if isinstance(f, dict) else None
        if domain is not None and not (isinstance(domain, str) and NAME.match(domain) and len(domain) <= 64):
            raise ConfigError(f"host {host!r}: GPU {i}'s NVLink domain {str(domain)[:80]!r} is no "
                              "<clusterUuid>.<cliqueId>", hint="discover the host again")
        of.setdefault(domain, []).append(i)
    if len(of) > 1:
        parts = "; ".join(f"GPU {', '.join(map(str, ix))} in {d or 'no NVLink domain'}"
                          for d, ix in of.items())
        raise ConfigError(f"host {host!r}: its GPUs are in {len(of)} NVLink cliques ({parts}); a host's GPUs "
                          "are in one NVLink partition", hint=FIX_FABRIC)
    return next(iter(of), None)


def _fabric(facts: Any) -> Any:
    """A GPU's fabric facts; None (no NVLink fabric, as discovery says it) where NVML has no fabric call (a
    driver before R535, an older nvidia-ml-py): an ordinary host, not a broken registration."""
    if isinstance(facts, dict) and facts.get("nvml_error") == ERROR_FUNCTION_NOT_FOUND:
        return None
    return facts


def _domain(name: str, members: list[str], hosts: Hosts) -> dict[str, Any]:
    """The nvlink_domains entry of the hosts of one clique: same GPU count on each, at most
    MAX_NVLINK_DOMAIN_GPUS in all, NVLink bandwidth the smallest of its hosts'."""
    counts: dict[int, list[str]] = {}
    for h in members:
        counts.setdefault(hosts[h][0].gpus, []).append(h)
    if len(counts) > 1:
        parts = "; ".join(f"{compress(sorted(hs))}: {n} GPUs" for n, hs in sorted(counts.items()))
        raise ConfigError(f"NVLink domain {name}: its hosts have different GPU counts ({parts}); the trays "
                          "of an NVL72 rack have the same GPUs, so a GPU is missing (fallen off the bus, "
                          "disabled)", hint="fix the host (nvidia-smi; the discovery notes name the GPU NVML "
                                            "does not report) and discover it again")
    gpus = sum(hosts[h][0].gpus for h in members)
    if gpus > MAX_NVLINK_DOMAIN_GPUS:
        raise ConfigError(f"NVLink domain {name}: {len(members)} hosts with {gpus:,} GPUs; one NVLink domain "
                          f"joins at most {MAX_NVLINK_DOMAIN_GPUS} GPUs (NVLink 5): hosts of two domains "
                          "report the same cluster UUID and clique id",
                          hint="check the fragments' sidecars (nvlink_domain) and the hosts' nvidia-imex / "
                               "fabric manager")
    gbps = min(hosts[h][0].nvlink_gbps for h in members)
    if not gbps:
        slow = compress(sorted(h for h in members if not hosts[h][0].nvlink_gbps))
        raise ConfigError(f"NVLink domain {name}: hosts {slow} have no active NVLink (nvlink_gbps: 0) though "
                          "NVML puts their GPUs in the domain", hint=FIX_FABRIC)
    return {"name": name, "hosts": compress(sorted(members)), "gbps": gbps,
            "nvswitches": NVSWITCHES_PER_72_GPUS * math.ceil(gpus / 72)}


def _gpus(domain: dict[str, Any], hosts: Hosts) -> int:
    return sum(hosts[h][0].gpus for h in expand(domain["hosts"]))


def _host_types(types: dict[str, HostType], notes: list[str]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Hosts of identical types (memory aside: each host's MemTotal differs a little) under one type
    named after the GPU model; its memory_gb the smallest of its hosts'."""
    groups: dict[str, list[str]] = {}
    for host, ht in types.items():
        key = ht.model_copy(update={"memory_gb": 1.0}).model_dump_json()
        groups.setdefault(key, []).append(host)
    out: dict[str, Any] = {}
    entries = []
    for members in groups.values():
        ht = types[members[0]]
        base = _type_base(ht)
        tname = base if base not in out else next(f"{base}-{k}" for k in range(2, len(groups) + 2)
                                                   if f"{base}-{k}" not in out)
        mems = sorted({types[h].memory_gb for h in members})
        if len(mems) > 1:
            notes.append(f"host type {tname}: memory_gb {mems[0]:g} (the smallest of {len(members)} hosts', "
                         f"up to {mems[-1]:g})")
        out[tname] = ht.model_copy(update={"memory_gb": mems[0]}).model_dump()
        entries.append({"names": compress(sorted(members)), "type": tname})
    return out, entries


def _type_base(ht: HostType) -> str:
    """``gb200-x4`` for 4 GB200s; ``cpu`` without GPUs (the first feature is discovery's model slug)."""
    if not ht.gpus:
        return "cpu"
    return f"{ht.features[0] if ht.features else 'gpu'}-x{ht.gpus}"
