"""One placement problem: fabric + state + request, precomputed as numpy arrays once.

Every solver reads the same :class:`Problem`: which hosts are candidates and how much each can
take (``cap``: 0/1 host in nodes mode, a GPU count in total mode), each host's additive cost for
taking ``x`` GPUs (``host_cost_table``), the chain of domain levels, which domains are pristine,
and the resolved constraint levels. :meth:`Problem.finish` turns a host → count choice into a
:class:`Placement` (GPUs picked, cost evaluated, hard constraints verified).
"""

from __future__ import annotations

import bisect
import itertools
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.hostlist import compress, outside, select
from fabric_hpc.placement.contract import Placement
from fabric_hpc.placement.cost import CostWeights, evaluate, stranded
from fabric_hpc.placement.levels import domain_sums, fabric_levels, free_per_host, largest_domain_gpus
from fabric_hpc.placement.request import Request, parse_request
from fabric_hpc.placement.state import check_fabric, check_state
from fabric_hpc.placement.verify import violations
from fabric_hpc.validation import parse_model

if TYPE_CHECKING:
    from fabric_hpc.placement.state import ClusterState
    from fabric_hpc.topology import Fabric


class PlacementBug(FabricError):
    """A solver returned a placement that breaks a hard constraint (a bug, never a user error)."""


class Problem:
    """One placement problem (fabric, state, request, weights) as the arrays every solver reads:
    candidate hosts and their capacity ``cap`` (hosts in nodes mode, GPUs in total mode), the
    per-host cost table, the domain levels, pristine domains and the resolved constraint levels.
    Build one to call solver functions on it directly (``greedy(problem, options)``, ``cpsat(...)``:
    docs/placement.md, "Solvers"); :func:`~fabric_hpc.placement.place` builds one per call. It never
    changes the state."""

    def __init__(self, fab: Fabric, state: ClusterState, request: Request | str | Mapping[str, Any],
                 weights: CostWeights | Mapping[str, Any] | None = None, *,
                 slices: tuple[int, str] | None = None) -> None:
        """``request``: a :class:`Request` or its string / mapping form (:func:`parse_request`);
        ``weights``: :class:`CostWeights` or a mapping of its fields, None for the defaults.
        ``slices``: (count, level) to keep instead of the request's (the pipeline stages that
        :func:`~fabric_hpc.placement.greedy.greedy` also tries: :meth:`staged`). A wrong argument
        is a ConfigError naming it."""
        check_fabric(fab, "Problem()")
        check_state(state, fab, "Problem()")
        if not isinstance(request, Request):
            if not isinstance(request, (str, Mapping)):
                raise ConfigError(f"Problem(): request must be a Request, its string or a mapping, "
                                  f"not {type(request).__name__}", hint="e.g. 'nodes=4,gpus=8,within=leaf'")
            request = parse_request(request, source="request")
        if weights is not None and not isinstance(weights, CostWeights):
            if not isinstance(weights, Mapping):
                raise ConfigError(f"Problem(): weights must be CostWeights, a mapping of its fields or None, "
                                  f"not {type(weights).__name__}",
                                  hint="CostWeights(**fields), or None for the defaults")
            weights = parse_model(CostWeights, weights, source="weights")
        self.fab, self.state, self.request = fab, state, request
        self.weights = weights or _DEFAULT_WEIGHTS
        self.levels = lv = fabric_levels(fab)
        self.nodes_mode = request.nodes is not None
        self.units = request.units
        self.within = self._level(request.within)
        self.max_level = self._level(request.max_domains_level) if request.max_domains else None
        self.slices, slice_level = slices or request.tp_slices() or (request.slices, request.slice_level)
        self.slice_level = lv.level(slice_level) if slice_level else None
        self.slice_size = self.units // self.slices if self.slices else None
        self.tp = request.tp or 1  # tensor-parallel group size (cost.modelled_comm_ms)
        self.pp = request.pp or 1  # pipeline-parallel stages (cost.modelled_comm_ms)
        idx = fab.index
        nh, maxg = len(fab.hosts), int(lv.host_gpus.max(initial=0))
        free = state.free
        self.free_all = free_per_host(lv, idx.gpu_host, free)
        static = _static(fab)
        self.host_ok, every_host, self._sizes, self._eligible_gpus = self._eligible_hosts(static)
        usable = free if every_host else free & self.host_ok[idx.gpu_host]
        if lv.dense_gpus:  # GPU i is local GPU i % maxg of host i // maxg: a reshape places them
            self.free_mat = usable.reshape(nh, maxg)
        else:
            self.free_mat = np.zeros((nh, max(maxg, 1)), bool)
            self.free_mat[idx.gpu_host, idx.gpu_local] = usable
        self.numa_mat = static["numa_mat"]
        self.pristine = self._pristine(free)
        self.gpn = self._gpus_per_node()
        # per-problem invariants of set_pattern (they do not depend on the rail pattern)
        self._free_rows = self.free_all if usable is free else self.free_mat.sum(axis=1)
        self._numa_best_cache: np.ndarray | None = None
        self.host_cost_table = self._host_costs()
        self._background: list[np.ndarray] | None = None
        self.pattern: tuple[int, ...] | None = None
        self.patterns = self._patterns()
        self.set_pattern(self.patterns[0] if self.patterns else None)

    def _level(self, name: str | None) -> int | None:
        """The chain index of a constraint's level; None for none, and for ``leaf`` on a fabric
        without a network: its hosts hang off one non-blocking switch (docs/topology.md), so
        ``within=leaf`` and ``switches=K`` hold for every placement."""
        if not name or (name == "leaf" and self.fab.spec.network is None and name not in self.levels.alias):
            return None
        return self.levels.level(name)

    def staged(self) -> list[Problem]:
        """This problem with each pipeline stage (``pp`` > 1) kept inside one domain, once per level
        whose domains can hold a stage (lowest first), so that every stage's data-parallel rings stay
        inside a domain; empty when there is nothing to try (no ``pp``, the request's own slices).
        With ``tp`` groups to keep, only levels up to the NVLink domain: a stage inside one holds
        its whole groups there (``tp·pp`` divides the GPUs)."""
        tp_only = self.request.slices is None and self.request.tp_slices() is not None
        if self.pp <= 1 or (self.slices is not None and not tp_only) or self.units % self.pp:
            return []
        stage, lv, out = self.units // self.pp * (self.gpn or 1), self.levels, []
        for j in range(lv.alias.get("nvlink", 0) + 1 if tp_only else len(lv.chain)):
            if largest_domain_gpus(lv, j) >= stage:
                other = Problem(self.fab, self.state, self.request, self.weights, slices=(self.pp, lv.chain[j]))
                other._background = self._background
                out.append(other)
        return out

    def fresh(self) -> Problem:
        """The same problem as no solver has touched it yet (first rail pattern), sharing the
        running jobs' background traffic if it was computed (the portfolio's baselines)."""
        other = Problem(self.fab, self.state, self.request, self.weights)
        other._background = self._background
        return other

    def background(self) -> list[np.ndarray] | None:
        """Per-resource bytes of one data-parallel all-reduce of each running multi-GPU job
        (``weights.contention`` on; computed once per problem), for the collective model's fair
        sharing; else None. A job whose metadata give ``tp``/``pp`` runs its ``tp·pp`` rings
        (:meth:`ClusterState.parallel_shape`), any other one ring over all its GPUs."""
        if not self.weights.contention:
            return None
        if self._background is None:
            from fabric_hpc.placement.parallel import dp_load

            state = self.state
            owner, names = state.owner, {num: job for job, num in state.job_numbers().items()}
            busy = np.flatnonzero(owner >= 0)
            order = busy[np.argsort(owner[busy], kind="stable")]
            _, starts = np.unique(owner[order], return_index=True)
            size = self.weights.message_mb * 2**20
            self._background = [dp_load(self.fab, g, size, *state.parallel_shape(names[int(owner[g[0]])]))
                                for g in np.split(order, starts[1:]) if len(g) >= 2]
        return self._background

    # -- candidates --------------------------------------------------------------------------
    def _eligible_hosts(self, static: dict[str, Any]) -> tuple[np.ndarray, bool, list[int], int]:
        """(bool mask of the hosts the request may use, whether that is every host, their GPU
        counts sorted, their GPUs): depends on the fabric and the request's model, features, include and
        exclude only, so it is kept per fabric (read-only, at most ``_ELIGIBLE_MAX`` distinct keys,
        then started afresh)."""
        r = self.request
        key = (r.gpu_model, tuple(r.features), r.include, r.exclude, r.within == "nvlink")
        memo: dict[tuple, tuple[np.ndarray, bool, list[int], int]] = static["eligible"]
        hit = memo.get(key)
        if hit is None:
            if len(memo) >= _ELIGIBLE_MAX:
                memo.clear()
            ok = self._eligible_mask()
            ok.setflags(write=False)
            sizes = sorted(self.levels.host_gpus[ok].tolist())
            hit = memo[key] = (ok, bool(ok.all()), sizes, sum(sizes))
        return hit

    def _eligible_mask(self) -> np.ndarray:
        fab, r = self.fab, self.request
        ok = _type_ok(fab, r.gpu_model, tuple(r.features)) & (self.levels.host_gpus > 0)
        if r.include:
            ok &= np.isin(np.arange(len(fab.hosts)), self._hosts(r.include))
        if r.exclude:
            ok[self._hosts(r.exclude)] = False
        if r.within == "nvlink":  # PCIe-only GPUs are in no NVLink domain (docs/placement.md, "within")
            ok &= ~pcie_only_hosts(fab)
        return ok

    def eligible_gpus(self) -> int:
        """GPUs on the hosts the request may use: ``host_gpus[host_ok].sum()``."""
        return self._eligible_gpus

    def eligible_hosts_with(self, gpus: int) -> int:
        """How many hosts the request may use have at least ``gpus`` GPUs."""
        return len(self._sizes) - bisect.bisect_left(self._sizes, gpus)

    def _hosts(self, expr: str) -> list[int]:
        """The positions of the hosts of a host list; its first name the fabric lacks is a ConfigError
        (:meth:`_host`). The list is not expanded (``n[1-99998]`` against 16 hosts)."""
        missing = outside(expr, self.fab.host_pos)
        if missing is not None:
            self._host(missing)
        return [self.fab.host_pos[h] for h in select(expr, self.fab.host_pos)]

    def _host(self, name: str) -> int:
        if name not in self.fab.host_pos:
            hosts = self.fab.hosts
            raise ConfigError(f"request names host {name!r}, which is not in fabric {self.fab.name!r}",
                              hint=f"include/exclude take host lists of this fabric, e.g. {hosts[0]} or "
                                   f"{_range_example(hosts)} ({len(hosts)} hosts: {hosts[0]} .. {hosts[-1]})"
                              if hosts else "this fabric has no hosts")
        return self.fab.host_pos[name]

    def _pristine(self, free: np.ndarray) -> list[np.ndarray]:
        lv = self.levels
        per_host_free = self.free_all
        out = []
        static = _static(self.fab)
        for j, (tot, some) in enumerate(zip(static["dom_tot"], static["dom_some"], strict=True)):
            # chain level 0 is the hosts themselves (host_dom[:, 0] is the identity)
            fr = per_host_free if j == 0 else domain_sums(lv, j, per_host_free)
            out.append((tot == fr) & some)
        return out

    def _gpus_per_node(self) -> int | None:
        r = self.request
        if not self.nodes_mode:
            return None
        if r.gpus_per_node is not None:
            return r.gpus_per_node
        counts = self.levels.host_gpus[self.host_ok]
        return int(counts.max(initial=1))

    def _patterns(self) -> list[tuple[int, ...]]:
        """Rail patterns (local GPU index sets) that enough hosts have free, most hosts first."""
        r = self.request
        maxg = self.free_mat.shape[1]
        if not r.rail_aligned or self.gpn is None or self.gpn >= maxg:
            return []
        scored = []
        for combo in itertools.combinations(range(maxg), self.gpn):
            cols = list(combo)
            if r.numa_local and len(set(self.numa_mat[self.host_ok][:, cols].ravel().tolist()) - {-1}) > 1:
                continue
            hosts = int(self.free_mat[:, cols].all(axis=1).sum())
            if hosts:
                scored.append((-hosts, combo))
        scored.sort()
        return [c for _, c in scored]

    def set_pattern(self, pattern: tuple[int, ...] | None) -> None:
        """Fix the rail pattern (rail-aligned requests) and recompute capacities and costs."""
        self.pattern = pattern
        self.cap = self._capacity()
        self._cand: np.ndarray | None = None

    @property
    def cand(self) -> np.ndarray:
        """Hosts with capacity under the current pattern (computed on first read: greedy never reads it)."""
        if self._cand is None:
            self._cand = np.flatnonzero(self.cap > 0)
        return self._cand

    def _capacity(self) -> np.ndarray:
        r, lv = self.request, self.levels
        rows = self._free_rows
        full = rows == lv.host_gpus
        numa_best = self._numa_best() if r.numa_local else None
        if r.whole_hosts and r.numa_local:  # a whole host is NUMA-local only when one socket holds its GPUs
            full = full & (numa_best >= lv.host_gpus)
        if self.nodes_mode:
            g = self.gpn
            if r.whole_hosts:
                ok = full & (lv.host_gpus == g)
            elif r.rail_aligned and self.pattern is not None:
                ok = self.free_mat[:, list(self.pattern)].all(axis=1)
            elif r.rail_aligned and g < self.free_mat.shape[1]:
                ok = np.zeros(len(full), bool)
            else:
                ok = (numa_best if r.numa_local else rows) >= g
            return (ok & self.host_ok).astype(np.int64)
        if r.whole_hosts:
            return np.where(full & self.host_ok, lv.host_gpus, 0)
        return np.where(self.host_ok, numa_best if r.numa_local else rows, 0)

    def _numa_best(self) -> np.ndarray:
        if self._numa_best_cache is None:
            nn = int(self.numa_mat.max(initial=0)) + 1
            per = np.stack([(self.free_mat & (self.numa_mat == s)).sum(axis=1) for s in range(nn)], axis=1)
            self._numa_best_cache = per.max(axis=1)
        return self._numa_best_cache

    def _host_costs(self) -> np.ndarray:
        """[H, maxg+1]: cost of taking x GPUs from each host (frag increase + host term)."""
        width = self.free_mat.shape[1] + 1  # cube[host_gpus, free_all], one row index per host into [g·w + free, x]
        flat = _cost_cube(self.weights, width).reshape(width * width, width)
        return flat.take(_static(self.fab)["cost_row"] + self.free_all, axis=0)

    def host_cost(self, hosts: np.ndarray) -> np.ndarray:
        """Nodes mode: cost of putting one rank (``gpn`` GPUs) on each host."""
        return self.host_cost_table[hosts, self.gpn]

    # -- turning a choice into a placement -----------------------------------------------------
    def pick_gpus(self, host: int, count: int) -> list[int]:
        """Local GPU indices for ``count`` GPUs on ``host`` (pattern, NUMA best-fit, packing)."""
        if self.pattern is not None:
            return list(self.pattern)
        row, numa_row = self.free_mat[host].tolist(), self.numa_mat[host].tolist()
        free = [i for i, f in enumerate(row) if f]
        if count == len(free):  # all of them (the order does not matter: callers sort the GPUs)
            return free
        per: dict[int, int] = {}
        for i in free:
            per[numa_row[i]] = per.get(numa_row[i], 0) + 1
        sockets = sorted(per)
        best = None
        for s in sockets:  # best fit: the socket with the fewest free GPUs that still holds the set
            if per[s] >= count and (best is None or per[s] < per[best]):
                best = s
        if best is not None:
            return [i for i in free if numa_row[i] == best][:count]
        order = sorted(sockets, key=per.__getitem__)  # stable: ties keep socket order
        return [i for s in order for i in free if numa_row[i] == s][:count]

    def chosen_gpus(self, counts: dict[int, int]) -> tuple[list[int], np.ndarray]:
        """(sorted hosts used, sorted global GPU indices) for host -> GPU counts."""
        hosts = sorted(h for h, c in counts.items() if c > 0)
        first = self.levels.first_gpu
        if self.pattern is None and hosts:
            h = np.array(hosts, np.int64)
            if (self._free_rows[h] == np.array([counts[x] for x in hosts])).all():
                # every host gives all its free GPUs (what pick_gpus returns then): one nonzero
                rows, cols = np.nonzero(self.free_mat[h])
                return hosts, np.sort(first[h][rows] + cols)
        return hosts, np.array(sorted(int(first[h]) + i for h in hosts for i in self.pick_gpus(h, counts[h])),
                               np.int64)

    def finish(self, counts: dict[int, int], solver: str, t0: float, *, optimal: bool | None,
               notes: tuple[str, ...] = (), stats: dict | None = None) -> Placement:
        """The :class:`Placement` of a host → GPU count choice (``counts``): GPUs picked on each host,
        hard constraints verified (:class:`PlacementBug` if one breaks), cost evaluated; ``t0``: the
        solver's start (``time.perf_counter``) for ``time_s``."""
        hosts, gpus = self.chosen_gpus(counts)
        self.verify(gpus)
        pcie = [self.fab.hosts[h] for h in hosts if pcie_only_hosts(self.fab)[h]]
        if self.tp > 1 and pcie:
            notes += (f"tp={self.tp}: the tensor-parallel groups on {compress(pcie)} stay inside one host, "
                      "whose GPUs are PCIe-only (in no NVLink domain): their all-reduces go over PCIe",)
        cost, breakdown, spans = evaluate(self, gpus)
        return Placement(gpus=tuple(map(self.fab.gpus.__getitem__, gpus.tolist())),
                         hosts=tuple(map(self.fab.hosts.__getitem__, hosts)),
                         solver=solver, cost=cost, breakdown=breakdown, domains=spans, optimal=optimal,
                         time_s=time.perf_counter() - t0, slices=self._slices(hosts), notes=notes,
                         stats=stats or {})

    def _slices(self, hosts: list[int]) -> tuple[tuple[str, ...], ...]:
        if self.slice_level is None:
            return ()
        out: list[tuple[str, ...]] = []
        by_dom: dict[int, list[int]] = {}
        for h in hosts:
            by_dom.setdefault(int(self.levels.host_dom[h, self.slice_level]), []).append(h)
        for members in by_dom.values():
            if self.nodes_mode:
                for k in range(0, len(members), self.slice_size):
                    out.append(tuple(self.fab.hosts[h] for h in members[k:k + self.slice_size]))
            else:
                out.append(tuple(self.fab.hosts[h] for h in members))
        return tuple(out)

    def verify(self, gpus: np.ndarray) -> None:
        """Raise :class:`PlacementBug` unless every hard constraint holds."""
        problems = violations(self, gpus)
        if problems:
            raise PlacementBug("placement breaks hard constraints: " + "; ".join(problems))


# -- per-fabric invariants, computed once per fabric ---------------------------------------------
_STATIC: weakref.WeakKeyDictionary[Fabric, dict[str, Any]] = weakref.WeakKeyDictionary()


def _static(fab: Fabric) -> dict[str, Any]:
    """Arrays that depend only on the fabric (read-only): NUMA matrix, GPUs per domain, host-type masks."""
    out = _STATIC.get(fab)
    if out is None:
        lv, idx = fabric_levels(fab), fab.index
        nh, maxg = len(fab.hosts), int(lv.host_gpus.max(initial=0))
        numa = np.full((nh, max(maxg, 1)), -1, np.int64)
        numa[idx.gpu_host, idx.gpu_local] = idx.gpu_numa
        numa.setflags(write=False)
        tots = [np.bincount(lv.host_dom[:, j], weights=lv.host_gpus,
                            minlength=int(lv.host_dom[:, j].max()) + 1).astype(np.int64)
                for j in range(len(lv.chain))]
        out = _STATIC[fab] = {"numa_mat": numa, "dom_tot": tots, "dom_some": [t > 0 for t in tots], "type_ok": {},
                              "eligible": {}, "cost_row": lv.host_gpus * (max(maxg, 1) + 1)}
    return out


def _range_example(hosts: list[str]) -> str:
    """A host-list expression for the first few hosts (``su01-h[01-04]``), or the first host."""
    from fabric_hpc.hostlist import compress

    return compress(hosts[: min(4, len(hosts))])


_ELIGIBLE_MAX = 1024  # distinct (model, features, include, exclude) kept per fabric
_DEFAULT_WEIGHTS = CostWeights()  # frozen: one shared instance


def pcie_only_hosts(fab: Fabric) -> np.ndarray:
    """Per host: whether it has GPUs and they are PCIe-only, in no NVLink domain (read-only, per fabric)."""
    static = _static(fab)
    hit = static.get("pcie_only")
    if hit is None:
        hit = static["pcie_only"] = np.array([fab.host_type(h).gpus > 0 and fab.nvlink_domain_of(h) is None
                                              for h in fab.hosts], bool)
        hit.setflags(write=False)
    return hit


def _type_ok(fab: Fabric, gpu_model: str | None, features: tuple[str, ...]) -> np.ndarray:
    """Hosts whose type matches ``gpu_model`` and has every feature (cached per fabric; a copy)."""
    memo = _static(fab)["type_ok"]
    key = (gpu_model, features)
    if key not in memo:
        types = fab.spec.host_types
        ok = {n: ((gpu_model is None or t.gpu_model.lower() == gpu_model.lower())
                  and set(features) <= set(t.features)) for n, t in types.items()}
        memo[key] = np.array([ok[fab.host_type_of[h]] for h in fab.hosts], bool)
    return memo[key].copy()


_CUBES: dict[tuple, np.ndarray] = {}


def _cost_cube(w: CostWeights, width: int) -> np.ndarray:
    """``[host GPUs, free GPUs, x]``: the host-cost formula of :meth:`Problem._host_costs` for every
    (host size, free count) pair, evaluated element by element as for a single host (identical floats)."""
    key = (w.frag, w.host, w.job_sizes, w.job_size_probs, width)
    cube = _CUBES.get(key)
    if cube is None:
        g, free, xs = np.meshgrid(np.arange(width), np.arange(width), np.arange(width), indexing="ij")
        after = np.maximum(free - xs, 0)
        cube = w.frag * (stranded(after, g, w) - stranded(free, g, w)) + w.host * (xs > 0)
        cube.setflags(write=False)
        _CUBES[key] = cube
    return cube
