"""Hard-constraint checks on a finished placement (every solver's output goes through them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.cost import host_counts
from fabric_hpc.placement.state import FREE

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


def violations(p: Problem, gpus: np.ndarray) -> list[str]:
    """Human-readable list of broken hard constraints (empty when the placement is valid)."""
    idx, lv, r = p.fab.index, p.levels, p.request
    out: list[str] = []
    if len(set(gpus.tolist())) != len(gpus):
        out.append("a GPU is used twice")
    if not (p.state.owner[gpus] == FREE).all():
        out.append("a GPU is not free")
    host = idx.gpu_host[gpus]
    if not p.host_ok[host].all():
        out.append("a host is excluded or does not match the model/features")
    hosts, counts = host_counts(host)
    if p.nodes_mode:
        if len(hosts) != r.nodes or not (counts == p.gpn).all():
            out.append(f"needs {r.nodes} hosts × {p.gpn} GPUs, got {len(hosts)} hosts with {sorted(set(counts))}")
    elif len(gpus) != r.gpus:
        out.append(f"needs {r.gpus} GPUs, got {len(gpus)}")
    if r.whole_hosts and ((counts != lv.host_gpus[hosts]).any() or (p.free_all[hosts] != lv.host_gpus[hosts]).any()):
        out.append("whole_hosts: a host is shared or was not entirely free")
    if r.numa_local:
        for h in hosts:
            if len(np.unique(idx.gpu_numa[gpus[host == h]])) > 1:
                out.append(f"numa_local: {p.fab.hosts[h]} spans sockets")
    if r.rail_aligned:
        sets = {tuple(sorted(idx.gpu_local[gpus[host == h]].tolist())) for h in hosts}
        if len(sets) > 1:
            out.append("rail_aligned: hosts use different local GPU indices")
    out += _domain_checks(p, hosts, counts)
    return out


def _domain_checks(p: Problem, hosts: np.ndarray, counts: np.ndarray) -> list[str]:
    lv, r = p.levels, p.request
    out = []
    if p.within is not None and len(np.unique(lv.host_dom[hosts, p.within])) > 1:
        out.append(f"within={r.within}: spans {len(np.unique(lv.host_dom[hosts, p.within]))} domains")
    if p.max_level is not None and len(np.unique(lv.host_dom[hosts, p.max_level])) > r.max_domains:
        out.append(f"max_domains={r.max_domains} {r.max_domains_level}: exceeded")
    if p.slice_level is not None:
        units = np.ones_like(counts) if p.nodes_mode else counts
        per = np.bincount(lv.host_dom[hosts, p.slice_level], weights=units)
        if (per.astype(np.int64) % p.slice_size).any():
            out.append(f"slices: a {r.slice_level or 'nvlink'} holds a partial slice of {p.slice_size}")
    return out
