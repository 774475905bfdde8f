"""Greedy's spread of a fill for the ring (:mod:`fabric_hpc.placement.greedy`): the same hosts with
their GPUs evened out (:func:`_balanced`), or, where an NVLink domain holds several hosts (NVL72
racks) and the gang spans several, the GPUs evened out over those domains (:func:`_domain_balanced`).
The collective model gives a ring as many channels as the fewest NICs a domain brings, so a small
remainder in one domain starves the whole ring (docs/placement.md, "Solvers")."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.cost import modelled_comm_ms
from fabric_hpc.placement.netmodel import CollectiveParams

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.topology import Fabric


def _spread(p: Problem, base: np.ndarray, counts: dict[int, int]) -> dict[int, int]:
    """The fill's ``counts`` spread for the ring: over NVLink domains of several hosts (NVL72 racks)
    where the gang spans several (:func:`_domain_balanced`), else over its hosts (:func:`_balanced`)."""
    spread = _domain_balanced(p, base, counts)
    return _balanced(p, counts) if spread is None else spread


def _domain_balanced(p: Problem, base: np.ndarray, counts: dict[int, int]) -> dict[int, int] | None:
    """The collective model's tie-break where an NVLink domain holds several hosts (an NVL72 rack)
    and the gang spans several: the ring gets as many channels as the fewest NICs a domain brings, so
    the fill-first split (a whole rack and a remainder of 1 GPU in the next) starved it (gpus=73 on
    NVL72: 4.13 ms against 1.23 ms for 37+36). The same number of domains, the roomiest under the
    parents the fill used (ties: those it used), each given a share as even as their free GPUs allow
    (water-filling), filled best-fit inside; kept only where the fewest NICs per domain (at most
    ``max_channels``) grows and, unless the ring was starved (at most ``_STARVED`` channels, at
    least doubled), the modelled collective time drops: channels that cannot stay on their rail add
    latency (else the per-host spread). None: not such a case (the caller spreads per host)."""
    from fabric_hpc.placement import greedy as g  # the fill (greedy imports this module)

    lv, nv = p.levels, p.levels.alias.get("nvlink", 0)
    if nv < 1 or p.slice_level is not None or p.request.whole_hosts or len(counts) < 2:
        return None
    hosts = np.fromiter(counts, np.int64)
    dom = lv.host_dom[:, nv]
    used = np.unique(dom[hosts])
    if len(used) < 2:
        return None
    gpn = p.gpn if p.nodes_mode else 1
    dcap = g.domain_sums(lv, nv, base)
    pool = np.flatnonzero(dcap > 0)
    if nv + 1 < len(lv.chain):  # the parents the fill chose (leaves, groups) stay the same
        parent = np.zeros(len(dcap), np.int64)
        parent[dom] = lv.host_dom[:, nv + 1]
        pool = pool[np.isin(parent[pool], lv.host_dom[hosts, nv + 1])]
    pick = pool[np.lexsort((~np.isin(pool, used), -dcap[pool]))[: len(used)]]
    quota = _water_fill(dcap[pick], sum(counts.values()) // gpn)
    was = _fewest_nics(p, counts)
    if quota is None or min(int(quota.min()) * gpn, _MAX_CHANNELS) <= was:  # a domain brings ≤ its GPUs
        return None
    cap, out = base.copy(), {}
    try:
        for d, q in zip(pick.tolist(), quota.tolist(), strict=True):
            if q:
                g._fill(p, cap, g._domain_hosts(p, nv, d), nv, q, out)
    except g._NoFit:
        return None
    new = {h: c * gpn for h, c in out.items()}
    now = _fewest_nics(p, new)
    if not g._within_limit(p, new) or now <= was:
        return None
    if was <= _STARVED and now >= 2 * was:  # a starved ring (72+1): the spread wins by far, no need to ask
        return new
    # more channels, but where latency binds, channels that cross rails can cost more: the model decides
    old = _balanced(p, counts)
    if modelled_comm_ms(p, p.chosen_gpus(new)[1]) >= modelled_comm_ms(p, p.chosen_gpus(old)[1]):
        return old
    return new


def _water_fill(caps: np.ndarray, total: int) -> np.ndarray | None:
    """``total`` units over bins of ``caps``, maximising the fewest any bin gets (None: no room)."""
    if int(caps.sum()) < total:
        return None
    srt = np.sort(caps).tolist()
    below, level = 0, 0  # level: the smallest per-bin ceiling that holds them all
    for i, c in enumerate(srt):
        if below + c * (len(srt) - i) >= total:
            level = -(-(total - below) // (len(srt) - i))
            break
        below += c
    take = np.minimum(caps, level - 1)
    extra = [i for i in np.argsort(-caps, kind="stable") if caps[i] >= level][: total - int(take.sum())]
    take[extra] += 1
    return take


def _fewest_nics(p: Problem, counts: dict[int, int]) -> int:
    """The fewest NICs (at most ``max_channels``) an NVLink domain of ``counts`` brings the ring, a
    host bringing as many as it gives GPUs, up to its NIC count."""
    hosts = np.fromiter(counts, np.int64)
    per = np.minimum(np.fromiter(counts.values(), np.int64), _host_nics(p.fab)[hosts])
    dom = p.levels.host_dom[hosts, p.levels.alias.get("nvlink", 0)]
    _, inv = np.unique(dom, return_inverse=True)
    return int(min(np.bincount(inv, weights=per).min(), _MAX_CHANNELS))


_MAX_CHANNELS = CollectiveParams().max_channels
#: so few channels that doubling them was faster on the model in every case of 527 on busy NVL72
#: states (the slower spreads there had 13 to 28 channels before: rails that cannot match add latency)
_STARVED = 12
_NICS: weakref.WeakKeyDictionary[Fabric, np.ndarray] = weakref.WeakKeyDictionary()


def _host_nics(fab: Fabric) -> np.ndarray:
    """NICs per host (kept per fabric)."""
    hit = _NICS.get(fab)
    if hit is None:
        hit = _NICS[fab] = np.array([fab.host_type(h).nics for h in fab.hosts], np.int64)
    return hit


def _balanced(p: Problem, counts: dict[int, int]) -> dict[int, int]:
    """The collective model's tie-break for total-GPU requests over several hosts: the same hosts
    (so the same domains), the GPUs spread to maximise the fewest any host gets, where that gives the
    ring more channels. A host giving few GPUs gives the ring few NICs (channels), so this is never
    slower and usually faster: 8+8+7+1 GPUs on DGX hosts become 6+6+6+6. Slices keep their
    per-domain sums, so they are left as they are."""
    if p.nodes_mode or p.slice_level is not None or p.request.whole_hosts or len(counts) < 2:
        return counts
    hosts = sorted(counts)
    caps = np.array([int(p.cap[h]) for h in hosts], np.int64)
    total = sum(counts.values())
    sums = np.array([np.minimum(caps, k).sum() for k in range(int(caps.max()) + 1)])
    level = int(np.searchsorted(sums, total))  # the smallest per-host ceiling that holds them all
    take = np.minimum(caps, level - 1)
    extra = [i for i in np.argsort(-caps, kind="stable") if caps[i] >= level][: total - int(take.sum())]
    take[extra] += 1
    # only where it brings the ring more channels: a host with one NIC gives one however many GPUs
    # it gives (there 8+4 stays 8+4, not 6+6, which strands more GPUs for the same ring time)
    nics = np.array([p.fab.host_type(p.fab.hosts[h]).nics for h in hosts], np.int64)
    before = np.minimum(np.array([counts[h] for h in hosts], np.int64), nics)
    if int(np.minimum(take, nics).min()) <= int(before.min()):
        return counts
    return dict(zip(hosts, take.tolist(), strict=True))
