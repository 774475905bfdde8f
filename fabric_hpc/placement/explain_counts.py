"""What the checks of :mod:`fabric_hpc.placement.explain` count (it re-exports these): the request's
units, the free units per NVLink/rack domain, what a host or domain could give once jobs end or with
every GPU free, the running jobs that would have to end, and the GPUs that are PCIe-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.levels import domain_sums
from fabric_hpc.placement.state import DOWN

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


def unit_name(p: Problem) -> str:
    """What the request counts: hosts (nodes mode), GPUs of entirely free hosts (``whole_hosts``),
    or GPUs."""
    if p.nodes_mode:
        return f"hosts with {p.gpn} free GPUs" + (" on one NUMA node" if p.request.numa_local else "")
    return "GPUs on entirely free hosts" if p.request.whole_hosts else "GPUs"


def domain_capacity(p: Problem, level: int) -> np.ndarray:
    return domain_sums(p.levels, level, p.cap)


def blocking_jobs(p: Problem, deficit_gpus: int, hosts: np.ndarray | None = None) -> int:
    """At least how many running jobs would have to end to free ``deficit_gpus`` eligible GPUs."""
    owner = p.state.owner
    gpu_ok = p.host_ok[p.fab.index.gpu_host]
    if hosts is not None:
        gpu_ok &= np.isin(p.fab.index.gpu_host, hosts)
    held = owner[gpu_ok & (owner >= 0)]
    if deficit_gpus <= 0 or held.size == 0:
        return 0
    sizes = np.sort(np.bincount(held))[::-1]
    k = int(np.searchsorted(np.cumsum(sizes), deficit_gpus)) + 1
    return min(k, int((sizes > 0).sum()))


def largest_jobs(p: Problem, hosts: np.ndarray | None = None, k: int = 3) -> list[str]:
    """The ``k`` running jobs holding the most eligible GPUs (of ``hosts``, default all), most first:
    the ones whose end would free the most (ties: job id)."""
    owner = p.state.owner
    gpu_ok = p.host_ok[p.fab.index.gpu_host] & (owner >= 0)
    if hosts is not None:
        gpu_ok &= np.isin(p.fab.index.gpu_host, hosts)
    nums, held = np.unique(owner[gpu_ok], return_counts=True)
    name = {num: job for job, num in p.state.job_numbers().items()}
    ids = [(-int(n), name[j]) for j, n in zip(nums.tolist(), held.tolist()) if j in name]
    return [job for _, job in sorted(ids)[:k]]


def _ending(p: Problem, jobs: int, hosts: np.ndarray | None = None) -> str:
    """``" (the largest: j1, j2)"`` naming the jobs holding the most GPUs there ("" when none must end)."""
    return f" (the largest there: {', '.join(largest_jobs(p, hosts))})" if jobs else ""


def gpu_deficit(p: Problem, short: int, hosts: np.ndarray | None = None) -> int:
    """GPUs that must be freed for ``short`` more units, at least: GPUs in total mode; in nodes
    mode, the fewest GPUs that make ``short`` more hosts (of ``hosts``, default all) hold ``gpn``
    free ones (a partly used host needs only what it lacks); with ``whole_hosts`` in total mode,
    the fewest GPUs that make enough more hosts entirely free to hold ``short`` more GPUs (a host
    running one 1-GPU job lacks 1 GPU, not its size)."""
    if short <= 0:
        return 0
    if not p.nodes_mode and not p.request.whole_hosts:
        return short
    lv = p.levels
    if p.nodes_mode:
        cand = np.flatnonzero(p.host_ok & (lv.host_gpus >= p.gpn) & (p.cap == 0))
        if hosts is not None:
            cand = np.intersect1d(cand, hosts)
        lack = np.sort(p.gpn - np.minimum(p.free_all[cand], p.gpn))
        return int(lack[:short].sum()) if lack.size >= short else short * p.gpn
    cand = np.flatnonzero(_could_free_whole(p) & (p.cap == 0))
    if hosts is not None:
        cand = np.intersect1d(cand, hosts)
    sizes = np.sort(lv.host_gpus[cand])[::-1]
    k = int(np.searchsorted(np.cumsum(sizes), short)) + 1  # at least this many more hosts
    if k > sizes.size:
        return short
    return int(np.sort(lv.host_gpus[cand] - p.free_all[cand])[:k].sum())


def _could_free_whole(p: Problem) -> np.ndarray:
    """Per host: whether it would count for ``whole_hosts`` once its jobs end (eligible, with GPUs,
    none down, and with ``numa_local`` all on one NUMA node)."""
    lv, idx = p.levels, p.fab.index
    down = np.bincount(idx.gpu_host[p.state.owner == DOWN], minlength=len(lv.host_gpus))
    ok = p.host_ok & (lv.host_gpus > 0) & (down == 0)
    return ok & (_numa_most(p) >= lv.host_gpus) if p.request.numa_local else ok


def _pcie_free(p: Problem, idle: bool = False) -> int:
    """GPUs (free ones, or all with ``idle``) on hosts of the request's model and features whose GPUs
    are PCIe-only: ``within=nvlink`` cannot use them (they are in no NVLink domain)."""
    from fabric_hpc.placement.problem import _type_ok, pcie_only_hosts

    r = p.request
    hosts = pcie_only_hosts(p.fab) & _type_ok(p.fab, r.gpu_model, tuple(r.features))
    return int((p.levels.host_gpus if idle else p.free_all)[hosts].sum())


def _pcie_note(p: Problem) -> str:
    """``"; 12 free GPUs are PCIe-only, in no NVLink domain"`` for a ``within=nvlink`` request; else ""."""
    free = _pcie_free(p) if p.request.within == "nvlink" else 0
    return f"; {free} free GPU(s) are PCIe-only, in no NVLink domain (within=nvlink)" if free else ""


def _display(level: str | None) -> str:
    return {"nvlink": "NVLink domain", "rack": "rack", "host": "host"}.get(level or "", f"{level} group")


def _room_per_host(p: Problem) -> np.ndarray:
    """Per host: the units it could give once every job on it ended (its down GPUs stay down)."""
    lv, idx, r = p.levels, p.fab.index, p.request
    down = np.bincount(idx.gpu_host[p.state.owner == DOWN], minlength=len(lv.host_gpus))
    usable = lv.host_gpus - down
    if r.numa_local:
        usable = np.minimum(usable, _numa_most(p))
    if p.nodes_mode:
        ok = (lv.host_gpus == p.gpn) & (down == 0) if r.whole_hosts else usable >= p.gpn
        return (ok & p.host_ok).astype(np.int64)
    if r.whole_hosts:
        return np.where(p.host_ok & (down == 0), lv.host_gpus, 0)
    return np.where(p.host_ok, usable, 0)


def _numa_most(p: Problem) -> np.ndarray:
    """Per host: the most GPUs that one NUMA node holds (a GPU's NUMA node is static)."""
    numa = p.numa_mat
    sockets = int(numa.max(initial=0)) + 1
    return np.stack([(numa == s).sum(axis=1) for s in range(sockets)], axis=1).max(axis=1)


def _idle_caps(p: Problem, level: int, numa: bool) -> np.ndarray:
    """Per domain of ``level``: the units it could give with every GPU free (an upper bound when
    rail_aligned also applies); ``numa``: each host only the GPUs of one NUMA node."""
    r, gpus = p.request, p.levels.host_gpus
    most = _numa_most(p) if numa else gpus
    if p.nodes_mode:
        ok = (gpus == p.gpn) & (most >= gpus) if r.whole_hosts else most >= p.gpn
        per_host = (ok & p.host_ok).astype(np.int64)
    elif r.whole_hosts:
        per_host = np.where(p.host_ok & (most >= gpus), gpus, 0)
    else:
        per_host = np.where(p.host_ok, most, 0)
    return domain_sums(p.levels, level, per_host)
