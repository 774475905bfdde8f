"""Baselines: what Slurm's topology plugins would choose (``slurm-tree``, ``slurm-block``).

``slurm-tree`` follows ``_eval_nodes_topo`` in ``src/plugins/topology/tree/eval_nodes_tree.c``
(SchedMD/slurm, commit 009b170), for equal node weights and no required nodes:

1. the *top switch* is the highest-level switch whose subtree has enough available nodes (the
   last such switch in table order, which is what ``level >= top.level && weight <= lowest``
   selects when all weights are equal); nodes outside it are dropped;
2. leaf switches are then added one at a time with ``_topo_choose_best_switch``: a leaf that is
   closer (sum of ``switches_dist`` hops to the leaves already used) and fits the remainder wins;
   at equal distance ``_topo_compare_switches`` prefers the leaf that fits with the fewest nodes
   (tightest fit), else — walking up to the parents while they differ — the one whose parent
   fits, else the one with the most nodes;
3. inside a leaf, nodes are taken in node-index (bitmap) order until the request is met;
4. ``--switches=K`` (``max_domains`` at the leaf level): if more leaves were used the job would
   stay pending, so the baseline reports it infeasible.

A fabric without a network is hosts on one non-blocking switch (docs/topology.md): that switch is
the top switch and the one leaf, so nodes are taken in index order.

Slurm's tree plugin knows only the switch tree: NVLink domains, racks and fragmentation are
invisible to it. ``within`` and slices are emulated by running the algorithm on each domain in
turn (as separate partitions would), the first that succeeds wins.

``slurm-block`` follows the topology/block documentation (slurm.schedmd.com/topology.html,
"Block Topology"): base blocks (here the lowest multi-host level: the NVL72 rack, the SU) are
aggregated into blocks of 2^k consecutive base blocks; a job goes into the smallest block level
whose block can hold it, the best-fit block at that level, its base blocks best-fit, nodes in
index order.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import numpy as np

from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.explain import diagnose, unit_name
from fabric_hpc.placement.levels import domain_sums
from fabric_hpc.placement.problem import Problem


def _fail(p: Problem, solver: str, why: str) -> PlacementInfeasible:
    return PlacementInfeasible(f"{solver}: {why} for {p.request.describe()}",
                               explanation={"constraint": "solver", "solver": solver, "unit": unit_name(p),
                                            "reason": why}, hint="try solver cpsat or greedy")


def _domains_then(p: Problem, cap: np.ndarray, run) -> dict[int, int] | None:
    """Run ``run(cap)`` on each allowed domain (within / slices), first success wins."""
    if p.slice_level is not None:
        if p.within is None:
            return _slices(p, cap, run)
        return _first_domain(p, cap, p.within, p.units, lambda c, _: _slices(p, c, run))
    if p.within is not None:
        return _first_domain(p, cap, p.within, p.units, run)
    return run(cap, p.units)


def _slices(p: Problem, cap: np.ndarray, run) -> dict[int, int] | None:
    """Each slice by ``run`` in the first domain of the slice level that holds it. Taking a slice
    changes only its own domain, so the domains before it still hold none: the first domain keeps
    every slice ``run`` finds in it, then the next one (one pass, not one over all domains per
    slice; ``run`` depends only on the capacities it is given). A host (slice level 0) is not run:
    on one host both algorithms give the slice exactly when :func:`_take` takes it whole (``need``
    of its free units; all of them under whole_hosts), so its slices are counted at once (the
    per-slice runs are the oracle of tests/placement/test_slurm_slices.py)."""
    out: dict[int, int] = {}
    cap = cap.copy()
    left, level, need = p.slices, p.slice_level, p.slice_size
    dom = p.levels.host_dom[:, level]
    caps = cap if level == 0 else domain_sums(p.levels, level, cap)
    whole = p.request.whole_hosts and not p.nodes_mode
    for d in np.flatnonzero(caps >= need).tolist():
        if level == 0:  # a host: both runs give it a slice exactly while ``_take`` takes one from it
            n = min(left, (1 if cap[d] == need else 0) if whole else int(cap[d]) // need)
            if n:
                out[d], cap[d], left = out.get(d, 0) + n * need, cap[d] - n * need, left - n
            if not left:
                return out
            continue
        mine = dom == d
        while left and cap[mine].sum() >= need:  # fewer free units: skipped unseen, as _first_domain does
            got = run(np.where(mine, cap, 0), need)
            if got is None:
                break
            for h, c in got.items():
                out[h] = out.get(h, 0) + c
                cap[h] -= c
            left -= 1
        if not left:
            return out
    return None if left else out


def _first_domain(p: Problem, cap: np.ndarray, level: int, need: int, run) -> dict[int, int] | None:
    """``run`` in the first domain of ``level``, in index order, where it finds ``need`` units (the
    domains with fewer free units are skipped unseen: ``run`` cannot find more than there is)."""
    dom = p.levels.host_dom[:, level]
    caps = cap if level == 0 else domain_sums(p.levels, level, cap)
    for d in np.flatnonzero(caps >= need).tolist():
        got = run(np.where(dom == d, cap, 0), need)
        if got is not None:
            return got
    return None


def _finish(p: Problem, counts: dict[int, int] | None, solver: str, t0: float) -> Placement:
    if counts is None:
        raise _fail(p, solver, "the algorithm found no allocation")
    gpus = {h: c * (p.gpn or 1) if p.nodes_mode else c for h, c in counts.items()}
    if p.max_level is not None:
        used = len(np.unique(p.levels.host_dom[np.fromiter(gpus, np.int64), p.max_level]))
        if used > p.request.max_domains:
            raise _fail(p, solver, f"uses {used} {p.levels.chain[p.max_level]} domains > max_domains "
                        f"(Slurm would keep the job pending)")
    return p.finish(gpus, solver, t0, optimal=None)


# -- topology/tree -----------------------------------------------------------------------------
class _Tree:
    def __init__(self, p: Problem) -> None:
        lv = p.levels
        self.p = p
        self.net = [j for j, name in enumerate(lv.chain) if name in p.fab.levels]
        #: no network: every host on one non-blocking switch (docs/topology.md), the top switch and
        #: the one leaf; Slurm then takes nodes in index order
        self.flat = not self.net
        self.leaf = self.net[0] if self.net else 0

    def run(self, cap: np.ndarray, need: int) -> dict[int, int] | None:
        lv = self.p.levels
        if self.flat:
            out: dict[int, int] = {}
            return out if not _fill(self.p, np.flatnonzero(cap > 0), cap.copy(), need, out) else None
        # 1. top switch: highest level with a switch that has enough available units
        top_level, top = None, None
        for j in self.net:
            caps = np.bincount(lv.host_dom[:, j], weights=cap, minlength=len(lv.dom_names[j]))
            ok = np.flatnonzero(caps >= need)
            if len(ok):
                top_level, top = j, int(ok[-1])
        if top is None:
            return None
        cap = np.where(lv.host_dom[:, top_level] == top, cap, 0)
        return self._leaves(cap, need)

    def _count(self, cap: np.ndarray, j: int) -> np.ndarray:
        lv = self.p.levels
        return np.bincount(lv.host_dom[:, j], weights=cap, minlength=len(lv.dom_names[j])).astype(np.int64)

    def _leaves(self, cap: np.ndarray, need: int) -> dict[int, int] | None:
        lv = self.p.levels
        cap = cap.copy()
        rem, out = need, {}
        used: list[int] = []
        nleaf = len(lv.dom_names[self.leaf])
        leaf_host = np.array([np.argmax(lv.host_dom[:, self.leaf] == d) for d in range(nleaf)])
        while rem > 0:
            cnt = self._count(cap, self.leaf)
            dist = np.array([sum(self._dist(leaf_host[i], leaf_host[u]) for u in used) for i in range(nleaf)])
            best = -1
            for i in range(nleaf):
                if cnt[i] <= 0 or i in used:
                    continue
                if best == -1:
                    best = i
                    continue
                tcs, i_fit = self._compare(i, best, rem, cap, leaf_host)
                if (dist[i] < dist[best] and i_fit) or (dist[i] == dist[best] and tcs > 0):
                    best = i
            if best == -1:
                return None
            used.append(best)
            hosts = np.flatnonzero((lv.host_dom[:, self.leaf] == best) & (cap > 0))
            rem = _fill(self.p, hosts, cap, rem, out)
        return out

    def _dist(self, h1: int, h2: int) -> int:
        """Switch hops between the leaves of two hosts: 2 per level up to their common switch."""
        lv = self.p.levels
        for k, j in enumerate(self.net):
            if lv.host_dom[h1, j] == lv.host_dom[h2, j]:
                return 2 * k
        return 2 * len(self.net)

    def _compare(self, i: int, j: int, rem: int, cap: np.ndarray, leaf_host: np.ndarray) -> tuple[int, bool]:
        lv = self.p.levels
        hi, hj = int(leaf_host[i]), int(leaf_host[j])
        k = 0
        i_fit0 = False  # does i fit at the lowest level (set on the first pass)
        while True:
            level = self.net[k]
            cnt = self._count(cap, level)
            ci, cj = cnt[lv.host_dom[hi, level]], cnt[lv.host_dom[hj, level]]
            i_fit, j_fit = ci >= rem, cj >= rem
            if k == 0:
                i_fit0 = i_fit
            if i_fit and j_fit:
                return (1 if ci < cj else -1 if ci > cj else 0), i_fit0
            if i_fit != j_fit:
                return (1 if i_fit else -1), i_fit0
            up = k + 1 < len(self.net) and lv.host_dom[hi, self.net[k + 1]] != lv.host_dom[hj, self.net[k + 1]]
            if not up:
                break
            k += 1
        return (1 if ci > cj else -1 if ci < cj else 0), i_fit0


def slurm_tree(p: Problem, options: SolveOptions | None = None) -> Placement:
    t0 = time.perf_counter()
    diagnose(p)
    tree = _Tree(p)
    return _finish(p, _domains_then(p, p.cap, tree.run), "slurm-tree", t0)


def _take(p: Problem, cap: int, rem: int) -> int:
    """GPUs to take from a host with ``cap`` free when ``rem`` are still needed: a whole host
    (whole_hosts) only when it does not overshoot, so the gang is exactly its GPU count."""
    if p.request.whole_hosts and not p.nodes_mode:
        return cap if cap <= rem else 0
    return min(cap, rem)


def _fill(p: Problem, hosts: np.ndarray, cap: np.ndarray, rem: int, out: dict[int, int]) -> int:
    """Take from ``hosts`` in index (bitmap) order into ``out`` (``cap`` lowered) until ``rem`` are
    taken; returns what is still needed."""
    for h in hosts.tolist():
        take = _take(p, int(cap[h]), rem)
        if take:
            out[h] = take
            cap[h] -= take
            rem -= take
            if rem == 0:
                break
    return rem


# -- topology/block ----------------------------------------------------------------------------
def block_level(nodes: int, base_size: int, levels: Collection[int] | None = None) -> tuple[int | None, int]:
    """(block level, llblock level) of a job of ``nodes`` nodes under topology/block, as
    ``_get_block_level`` in ``src/plugins/topology/block/eval_nodes_block.c`` (Slurm 25.11.7): a block of
    level ``k`` is 2^k consecutive base blocks (base block ``i`` is in block ``i >> k``); the job's level
    is the smallest of ``levels`` (log2 of BlockSizes / base size; None: every level) that is at least
    ceil(log2(ceil(nodes / base_size))), None when none is (the whole topology is then the one block).
    Inside its block the job may use at most ceil(nodes / llblock size) blocks of the llblock level: the
    largest of ``levels`` below that ceil(log2(...)) (0 when it is 0)."""
    need = (-(-nodes // base_size) - 1).bit_length()  # ceil(log2(base blocks the nodes fill))
    if levels is None:
        return need, max(need - 1, 0)
    at = [k for k in levels if k >= need]
    below = [k for k in levels if k <= need - 1]
    return (min(at) if at else None), (max(below) if below else 0)


def _block_run(p: Problem, cap: np.ndarray, need: int) -> dict[int, int] | None:
    lv = p.levels
    base_level = 1 if len(lv.chain) > 1 else 0
    base = lv.host_dom[:, base_level]
    nbase = len(lv.dom_names[base_level])
    bsize = int(np.bincount(base, weights=(p.levels.host_gpus > 0) if p.nodes_mode else lv.host_gpus).max())
    base_cap = np.bincount(base, weights=cap, minlength=nbase).astype(np.int64)
    k = min(block_level(need, bsize)[0] or 0, (nbase - 1).bit_length())  # beyond: the whole fabric
    while True:
        agg = np.bincount(np.arange(nbase) >> k, weights=base_cap).astype(np.int64)
        fits = np.flatnonzero(agg >= need)
        if len(fits):
            block = int(fits[np.argmin(agg[fits])])
            break
        if (1 << k) >= nbase:
            return None
        k += 1
    members = np.flatnonzero((np.arange(nbase) >> k) == block)
    rem, out, cap = need, {}, cap.copy()
    bc = base_cap[members].copy()
    while rem > 0:
        fit = np.flatnonzero(bc >= rem)
        pick = fit[np.argmin(bc[fit])] if len(fit) else int(np.argmax(bc))
        if bc[pick] <= 0:
            return None
        for h in np.flatnonzero((base == members[pick]) & (cap > 0)):
            take = _take(p, int(cap[h]), rem)
            if not take:
                continue
            out[int(h)] = take
            cap[h] -= take
            rem -= take
            if rem == 0:
                break
        bc[pick] = 0
    return out


def slurm_block(p: Problem, options: SolveOptions | None = None) -> Placement:
    t0 = time.perf_counter()
    diagnose(p)
    return _finish(p, _domains_then(p, p.cap, lambda cap, need: _block_run(p, cap, need)), "slurm-block", t0)
