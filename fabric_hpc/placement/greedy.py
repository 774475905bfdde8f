"""``greedy``: domain best-fit with fragmentation scoring (the warm start and fallback of CP-SAT).

1. Pick the lowest chain level where one domain can hold the whole gang and, at that level, the
   best-fit domain: not pristine first, then the smallest free capacity (ties: cheaper hosts).
2. Fill it top-down: at each level take the best-fit child that holds the remainder, or else the
   child with the most capacity (fewest children spanned), and recurse.
3. On hosts, take the cheapest by the cost model's per-host term (fragmentation increase).
On a mixed cluster the fill is also tried on each class of hosts alone (same NVLink and NIC rates:
:func:`class_caps`), and the cheapest on the cost model wins.
Slices go domain by domain (a domain, once chosen, takes every slice it holds), preferring the
parent domain of the first slice.
With pipeline stages (``pp``) the fill is also tried with each stage as such a slice
(:meth:`Problem.staged`), and the cheaper placement on the cost model is returned. With
``contention`` on, where the running jobs' traffic slows the fill, it is also tried without the hosts
behind their busiest links (:func:`~fabric_hpc.placement.busy.avoiding_caps`), and again the cheapest
on the cost model wins.
``max_domains`` that the fill breaks is retried on the K largest domains of that level.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.busy import avoiding_caps, slowed
from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cpsat_comm import host_rates
from fabric_hpc.placement.explain import diagnose, unit_name
from fabric_hpc.placement.greedy_spread import _balanced, _spread  # noqa: F401 (_balanced: tests)
from fabric_hpc.placement.levels import domain_sums, run_starts
from fabric_hpc.placement.problem import PlacementBug, Problem

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric


def greedy(p: Problem, options: SolveOptions | None = None) -> Placement:
    t0 = time.perf_counter()
    diagnose(p)
    best: Placement | None = None
    best_pattern = p.pattern
    best_counts: dict[int, int] | None = None
    for pattern in (p.patterns[:4] or [p.pattern]):
        if pattern != p.pattern:  # capacities follow the pattern: the current one needs no recomputation
            p.set_pattern(pattern)
        counts = greedy_counts(p)
        if counts is None:
            continue
        placed = p.finish(counts, "greedy", t0, optimal=None)
        if best is None or placed.cost < best.cost:
            best, best_pattern, best_counts = placed, pattern, counts
    if best_pattern != p.pattern:
        p.set_pattern(best_pattern)
    for cap in class_caps(p):  # a mixed cluster: also the fill on each class of hosts alone
        counts = greedy_counts(p, cap)
        if counts is not None and counts != best_counts:
            placed = p.finish(counts, "greedy", t0, optimal=None)
            if best is None or placed.cost < best.cost:
                best, best_counts = placed, counts
    if best is not None and slowed(p, best):  # contention on: also around the running jobs' busiest links
        best = _around_busy(p, best, best_counts, t0)
    for staged in p.staged():  # pipeline stages: also each stage inside one domain, the cheapest wins
        for cap in (None, *class_caps(staged)):
            counts = greedy_counts(staged, cap)
            try:  # checked against the request itself (its tp groups), and reported with its own slices
                placed = p.finish(counts, "greedy", t0, optimal=None) if counts is not None else None
            except PlacementBug:
                continue
            if placed is not None and (best is None or placed.cost < best.cost):
                best = placed
    if best is None:
        raise PlacementInfeasible(f"greedy found no placement for {p.request.describe()}: the constraints "
                                  "together cannot be met (each alone can)", explanation={
                                      "constraint": "combination", "solver": "greedy", "unit": unit_name(p)},
                                  hint="try solver cpsat, which searches exhaustively")
    return best


def class_caps(p: Problem) -> list[np.ndarray]:
    """``p.cap`` kept to the hosts of one class each (hosts with the same NVLink / PCIe and NIC
    rates and NIC count: :func:`~fabric_hpc.placement.cpsat_comm.host_rates`), one per class among
    the candidates, where there are several (a mixed cluster); else empty. Best fit alone knows no
    host class: on an empty cluster of 4-GPU PCIe and 8-GPU NVLink hosts it filled a PCIe host
    for ``gpus=4`` (15.3 ms against 1.1 ms)."""
    rows, cap = host_rates(p.fab), p.cap
    hosts = np.flatnonzero(cap > 0)
    if not len(hosts) or (rows[hosts] == rows[hosts[0]]).all():
        return []
    _, cls = np.unique(rows, axis=0, return_inverse=True)
    cls = cls.ravel()
    return [np.where(cls == c, cap, 0) for c in np.unique(cls[hosts])]


def _around_busy(p: Problem, best: Placement, best_counts: dict[int, int] | None, t0: float) -> Placement:
    """``best``, or the cheapest fill on :func:`avoiding_caps` where that is cheaper on the full cost
    (fills equal to one already evaluated are not evaluated again)."""
    seen = [best_counts]
    for cap in avoiding_caps(p):
        counts = greedy_counts(p, cap)
        if counts is None or counts in seen:
            continue
        seen.append(counts)
        placed = p.finish(counts, "greedy", t0, optimal=None)
        if placed.cost < best.cost:
            best = placed
    return best


def greedy_gpus(p: Problem) -> np.ndarray | None:
    """The GPU indices :func:`greedy` would choose, or None where it would raise; without the
    cost evaluation and checks of a full :class:`Placement` when there is a single rail pattern
    to try, no pipeline stages and no background traffic to avoid (with several candidates the
    cheapest wins, so this runs :func:`greedy`)."""
    try:
        if len(p.patterns) > 1 or p.pp > 1 or p.background() or class_caps(p):
            pos = p.fab.gpu_pos
            return np.array(sorted(pos[g] for g in greedy(p).gpus), np.int64)
        diagnose(p)
    except PlacementInfeasible:
        return None
    counts = greedy_counts(p)
    return None if counts is None else p.chosen_gpus(counts)[1]


def greedy_counts(p: Problem, base: np.ndarray | None = None) -> dict[int, int] | None:
    """host index -> GPUs, or None when the heuristic cannot satisfy the constraints; ``base``: the
    hosts' capacities to fill from (``p.cap`` when None, e.g. fewer hosts: :func:`avoiding_caps`)."""
    base = p.cap if base is None else base
    counts = _attempt(p, base.copy())
    if counts is not None and _within_limit(p, counts):
        return _spread(p, base, counts)
    if p.max_level is None:
        return None
    caps = domain_sums(p.levels, p.max_level, base)
    keep = np.argsort(-caps, kind="stable")[: p.request.max_domains]
    cap = np.where(np.isin(p.levels.host_dom[:, p.max_level], keep), base, 0)
    counts = _attempt(p, cap)
    return _spread(p, cap, counts) if counts is not None and _within_limit(p, counts) else None


def _within_limit(p: Problem, counts: dict[int, int]) -> bool:
    if p.max_level is None:
        return True
    hosts = np.fromiter(counts, np.int64)
    return len(np.unique(p.levels.host_dom[hosts, p.max_level])) <= p.request.max_domains


class _NoFit(Exception):
    pass


def _attempt(p: Problem, cap: np.ndarray) -> dict[int, int] | None:
    try:
        return _attempt_fill(p, cap)
    except _NoFit:
        return None


def _attempt_fill(p: Problem, cap: np.ndarray) -> dict[int, int] | None:
    out: dict[int, int] = {}
    if p.slice_level is not None:
        if not _fill_slices(p, cap, out):
            return None
    else:
        top = len(p.levels.chain) if p.within is None else p.within
        for level in range(top + 1):
            if level == len(p.levels.chain):
                members = np.arange(len(cap))
                break
            d = _best_domain(p, cap, level, p.units)
            if d is not None:
                members = _domain_hosts(p, level, d)
                break
        else:
            return None
        _fill(p, cap, members, level, p.units, out)
    return {h: c * (p.gpn or 1) if p.nodes_mode else c for h, c in out.items()}


def _fill_slices(p: Problem, cap: np.ndarray, out: dict[int, int]) -> bool:
    """Place the slices one by one (near the first), all inside one ``within`` domain when the
    request has one: the best-fitting domain that holds every slice. False when none does."""
    if p.within is None:
        return _slices_in(p, cap, out)
    dom = p.levels.host_dom[:, p.within]
    caps = domain_sums(p.levels, p.within, cap) if p.within else cap
    for d in np.argsort(caps, kind="stable"):  # smallest domains that might hold the gang first
        if caps[d] < p.units:
            continue
        trial_cap, trial = np.where(dom == d, cap, 0), {}
        try:
            if _slices_in(p, trial_cap, trial):
                cap[dom == d] = trial_cap[dom == d]
                out.update(trial)
                return True
        except _NoFit:
            continue
    return False


def _slices_in(p: Problem, cap: np.ndarray, out: dict[int, int]) -> bool:
    """Place the slices, spanning as few domains of the slice level as the free GPUs allow. Slice
    by slice the rule is: a domain already used first, then one that holds every remaining slice
    (the best fit among them, so the last new domain is the tightest), else the roomiest (it holds
    the most of them); near the first domain (same parent) before far; then (hosts) the cheapest
    take / (domains) unbroken pristine domains last, then the first. A used domain is taken again
    while it holds a slice, so each domain, once chosen, takes every slice it holds and is never
    chosen again, and the others keep their capacities meanwhile: one choice per domain gives the
    same sequence, in work that grows with the domains used rather than slices × domains (the
    slice-by-slice loop is the oracle of tests/placement/test_greedy_slices.py)."""
    lv, level, size = p.levels, p.slice_level, p.slice_size
    caps = cap if level == 0 else domain_sums(lv, level, cap)  # chain level 0: the hosts themselves
    exact = level == 0 and p.request.whole_hosts and not p.nodes_mode  # a whole host is all or nothing
    cand = ((caps == size) if exact else (caps >= size)).nonzero()[0]
    if not len(cand):
        return False
    room = caps[cand].astype(np.int64)  # a copy: ``cap`` changes as slices are taken
    tie = _take_cost(p, cand, size) if level == 0 else p.pristine[level][cand]
    best_fit = np.zeros(len(cand), np.int64) if level == 0 else room  # among domains that hold the rest
    away: np.ndarray | None = None  # known once the first domain is
    order = np.lexsort((tie, -room))  # nothing used yet: the roomiest first (ties: cheaper, then first)
    most, i, left = _suffix_max(room[order]), 0, int(p.slices)
    while left:
        if i == len(order):
            return False
        rest = left * size
        if most[i] >= rest:  # domains that hold every remaining slice: near first, then the best fit
            whole = np.sort(order[i:])
            whole = whole[room[whole] >= rest]
            near = np.zeros(len(whole), bool) if away is None else away[whole]
            k = int(whole[np.lexsort((tie[whole], best_fit[whole], near))[0]])
            _take_slices(p, cap, int(cand[k]), left, out)
            return True
        k = int(order[i])
        take = int(room[k]) // size  # fewer than ``left``: it does not hold the rest
        _take_slices(p, cap, int(cand[k]), take, out)
        left -= take
        i += 1
        if away is None:  # the first domain: near it (same parent) before far from now on
            away = _away(p, cand, k)
            order = np.sort(order[1:])
            order = order[np.lexsort((tie[order], -room[order], away[order]))]
            most, i = _suffix_max(room[order]), 0
    return True


def _away(p: Problem, cand: np.ndarray, k: int) -> np.ndarray:
    """Which domains ``cand`` of the slice level have another parent (one level up) than ``cand[k]``
    (all False at the top level)."""
    lv, level = p.levels, p.slice_level
    if level + 1 >= len(lv.chain):
        return np.zeros(len(cand), bool)
    if level == 0:
        parent = lv.host_dom[cand, 1]
    else:  # a domain's parent: that of any of its hosts (the first)
        ids, first = np.unique(lv.host_dom[:, level], return_index=True)
        parent = lv.host_dom[first[np.searchsorted(ids, cand)], level + 1]
    return parent != parent[k]


def _suffix_max(values: np.ndarray) -> np.ndarray:
    """``out[i] = values[i:].max()``."""
    return np.maximum.accumulate(values[::-1])[::-1] if len(values) else values


def _take_slices(p: Problem, cap: np.ndarray, d: int, count: int, out: dict[int, int]) -> None:
    """Take ``count`` slices, one after the other, from domain ``d`` of the slice level."""
    size = p.slice_size
    if p.slice_level == 0:  # a host: the slices are just its GPUs (or the host itself in nodes mode)
        out[d] = out.get(d, 0) + count * size
        cap[d] -= count * size
        return
    members = _domain_hosts(p, p.slice_level, d)
    for _ in range(count):
        _fill(p, cap, members, p.slice_level, size, out)


def _best_domain(p: Problem, cap: np.ndarray, level: int, need: int) -> int | None:
    """The best-fitting domain of chain ``level`` that holds ``need`` units (unbroken pristine
    domains last; hosts: the cheapest take)."""
    lv = p.levels
    caps = cap if level == 0 else domain_sums(lv, level, cap)  # chain level 0: the hosts themselves
    exact = level == 0 and p.request.whole_hosts and not p.nodes_mode  # a whole host is all or nothing
    fits = ((caps == need) if exact else (caps >= need)).nonzero()[0]
    if not len(fits):
        return None
    if level == 0:
        return int(fits[np.argmin(_take_cost(p, fits, need))])
    return int(fits[np.lexsort((caps[fits], p.pristine[level][fits]))[0]])


def _take_cost(p: Problem, hosts: np.ndarray, take: int | np.ndarray) -> np.ndarray:
    gpus = p.gpn if p.nodes_mode else take
    return p.host_cost_table[hosts, gpus]


def _fill(p: Problem, cap: np.ndarray, members: np.ndarray, level: int, need: int, out: dict[int, int]) -> None:
    """Take ``need`` units from the domain made of ``members`` (at chain ``level``), best-fit."""
    if level == 0:
        h = int(members[0])
        out[h] = out.get(h, 0) + need
        cap[h] -= need
        return
    if level == 1:  # children are the hosts themselves (chain level 0 is the identity)
        _fill_hosts(p, cap, members, need, out)
        return
    ids, inv, parts, starts = _children(p, members, level)
    ccap = (np.add.reduceat(cap[members], starts) if starts is not None
            else np.bincount(inv, weights=cap[members], minlength=len(ids)).astype(np.int64))
    pristine = p.pristine[level - 1][ids] if level - 1 < len(p.pristine) else np.zeros(len(ids), bool)
    rem = need
    while rem > 0:
        avail = (ccap > 0).nonzero()[0]
        if not len(avail):
            raise _NoFit
        fit = avail[ccap[avail] >= rem]
        if len(fit):
            k = int(fit[np.lexsort((ccap[fit], pristine[fit]))[0]])
            take = rem
        else:
            k = int(avail[np.lexsort((pristine[avail].astype(float), -ccap[avail]))[0]])
            take = int(ccap[k])
        _fill(p, cap, parts[k], level - 1, take, out)
        ccap[k] -= take
        rem -= take


def _fill_hosts(p: Problem, cap: np.ndarray, members: np.ndarray, need: int, out: dict[int, int]) -> None:
    """:func:`_fill` one level above the hosts. Step by step it would take, while no host can hold
    the remainder, the host with the most capacity (ties: cheaper, then first), and then the
    best-fit host that holds the remainder (not pristine first, then least capacity, then cheaper,
    then first). Hosts taken whole leave the others' capacities unchanged, so one sort by
    (-capacity, cost, position) gives that sequence, and a host that holds the remainder is always
    at the front of what is left."""
    if p.request.whole_hosts and not p.nodes_mode:
        _fill_whole_hosts(p, cap, members, need, out)
        return
    ccap = cap[members].astype(np.int64, copy=False)  # indexing made a copy already
    avail = (ccap > 0).nonzero()[0]
    whole = _take_cost(p, members[avail], ccap[avail])  # cost of taking a host's whole capacity
    order = avail[np.lexsort((whole, -ccap[avail]))]
    caps = ccap[order].tolist()
    rem, i = need, 0
    while rem > 0:
        if i == len(caps):
            raise _NoFit
        if caps[i] >= rem:  # the best-fit host among those that hold the remainder
            fit = np.sort(order[i:][ccap[order[i:]] >= rem])
            tie = _take_cost(p, members[fit], rem)
            k = int(fit[np.lexsort((tie, ccap[fit], p.pristine[0][members[fit]]))[0]])
            take = rem
        else:
            k, take = int(order[i]), caps[i]
            i += 1
        h = int(members[k])
        out[h] = out.get(h, 0) + take
        cap[h] -= take
        rem -= take


def _fill_whole_hosts(p: Problem, cap: np.ndarray, members: np.ndarray, need: int, out: dict[int, int]) -> None:
    """:func:`_fill_hosts` for whole hosts of unequal sizes: the cheapest host of exactly ``need``
    GPUs, else the largest hosts that do not overshoot (ties: cheaper, then first)."""
    ccap = cap[members].astype(np.int64, copy=False)
    avail = (ccap > 0).nonzero()[0]
    cost = _take_cost(p, members[avail], ccap[avail])
    exact = ccap[avail] == need
    order = avail[np.flatnonzero(exact)[np.argsort(cost[exact], kind="stable")]] if exact.any() \
        else avail[np.lexsort((cost, -ccap[avail]))]
    rem, picked = need, []
    for k in order.tolist():
        if ccap[k] <= rem:
            picked.append(k)
            rem -= int(ccap[k])
            if not rem:
                break
    if rem:
        raise _NoFit
    for k in picked:
        h = int(members[k])
        out[h] = out.get(h, 0) + int(ccap[k])
        cap[h] = 0


# -- per-fabric invariants of the fill ------------------------------------------------------------
# Host sets of domains and their split into child domains depend only on the fabric's levels, so
# they are kept per fabric (read-only arrays; nothing invalidates them, the size bound only caps
# memory). ``_fill`` gets the same arrays it used to compute with np.flatnonzero / np.unique.
_SPLITS: weakref.WeakKeyDictionary[Fabric, dict[tuple, tuple]] = weakref.WeakKeyDictionary()
_SPLITS_MAX = 65536


def _memo(p: Problem) -> dict[tuple, tuple]:
    memo = _SPLITS.get(p.fab)
    if memo is None or len(memo) > _SPLITS_MAX:
        memo = _SPLITS[p.fab] = {}
    return memo


def _domain_hosts(p: Problem, level: int, d: int) -> np.ndarray:
    """``np.flatnonzero(host_dom[:, level] == d)``: the hosts of domain ``d`` at chain ``level``."""
    memo = _memo(p)
    key = ("dom", level, d)
    hit = memo.get(key)
    if hit is None:
        hosts = np.flatnonzero(p.levels.host_dom[:, level] == d)
        hosts.setflags(write=False)
        hit = memo[key] = (hosts,)
    return hit[0]


def _children(p: Problem, members: np.ndarray,
              level: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray | None]:
    """(child domain ids at ``level - 1``, each member's child position, members of each child,
    where each child's members start in ``members`` when they are consecutive, else None) of the
    host set ``members``: ``np.unique(..., return_inverse=True)`` and ``members[inv == k]``."""
    memo = _memo(p)
    key = (level, members.tobytes())
    hit = memo.get(key)
    if hit is None:
        ids, inv = np.unique(p.levels.host_dom[members, level - 1], return_inverse=True)
        parts = [members[inv == k] for k in range(len(ids))]
        for a in (ids, inv, *parts):
            a.setflags(write=False)
        hit = memo[key] = (ids, inv, parts, run_starts(inv))
    return hit
