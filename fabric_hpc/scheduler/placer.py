"""Placers: the scheduler's view of :func:`fabric_hpc.placement.place`.

:class:`SolverPlacer` calls the placement solvers unchanged (``greedy``, ``cpsat``, ``slurm-tree``,
``slurm-block``) and adds three things a scheduler needs when it asks the same question many times:

* a cheap necessary check (enough free GPUs, enough hosts with ``gpus_per_node`` free) that skips
  the solver when the answer is certainly "no";
* a memo keyed by (request, free-GPU mask): the solvers are deterministic, so asking again on an
  unchanged state returns the stored answer (placement or "no");
* ``None`` instead of :class:`~fabric_hpc.placement.PlacementInfeasible`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from weakref import WeakKeyDictionary

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import select
from fabric_hpc.placement import SOLVERS, ClusterState, Placement, PlacementInfeasible, SolveOptions, place
from fabric_hpc.placement.levels import FabricLevels, domain_sums, fabric_levels, free_per_host
from fabric_hpc.placement.problem import _type_ok
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.caches import offers
from fabric_hpc.scheduler.contract import GpuFitter, Job, Placer

BLOCKED = "__blocked__"


def masked_state(state: ClusterState, blocked: np.ndarray) -> ClusterState:
    """A copy of ``state`` where the free GPUs in bool mask ``blocked`` are taken by a placeholder job."""
    out = state.copy()
    idx = np.flatnonzero(blocked & out.free)
    if idx.size:
        out.allocate(BLOCKED, idx)
    return out


_KEYS: dict[int, tuple[Request, str]] = {}


def request_key(request: Request) -> str:
    """``request.model_dump_json()``, remembered per request object (requests are frozen)."""
    hit = _KEYS.get(id(request))
    if hit is not None and hit[0] is request:
        return hit[1]
    if len(_KEYS) > 65536:
        _KEYS.clear()
    text = request.model_dump_json()
    _KEYS[id(request)] = (request, text)
    return text


def fit_gpus(placer: Placer, job: Job, state: ClusterState) -> tuple[str, ...] | None:
    """The GPUs ``placer`` would choose for ``job`` on ``state`` (its cheaper ``fit`` where it has one)."""
    if offers(placer, GpuFitter):
        return placer.fit(job, state)
    placement = placer.place(job, state)
    return None if placement is None else placement.gpus


def may_fit(request: Request, free: np.ndarray, gpu_host: np.ndarray, host_gpus: np.ndarray,
            levels: FabricLevels | None = None) -> bool:
    """Necessary condition for ``request`` to fit the bool mask ``free`` (never a false "no").

    With ``levels``, a ``max_domains`` request must also find what it needs in its best
    ``max_domains`` domains (the solvers' own "max_domains" check, before any Problem is built)."""
    least = request.nodes if request.nodes is not None else (request.gpus or 0)
    if request.nodes is not None and request.gpus_per_node is not None:
        least *= request.gpus_per_node
    if np.count_nonzero(free) < least:  # every branch below needs at least this many free GPUs
        return False
    domains = levels is not None and bool(request.max_domains) and request.max_domains_level in levels.alias
    if request.nodes is None and not request.whole_hosts and not domains:
        return True  # the per-host free counts sum to the free GPUs: the test above was all of it
    per_host = (free_per_host(levels, gpu_host, free) if levels is not None
                else np.bincount(gpu_host, weights=free, minlength=host_gpus.size).astype(np.int64))
    if request.nodes is not None:
        ok = rank_hosts(request, per_host, host_gpus)
        if not domains:  # hosts that can take one rank
            return int(np.count_nonzero(ok)) >= request.nodes
        units, want = ok, request.nodes  # whole numbers throughout: the sums are exact
    elif request.whole_hosts:
        units, want = np.where(per_host == host_gpus, per_host, 0), request.gpus or 0
    else:
        units, want = per_host, request.gpus or 0
    if int(units.sum()) < want:
        return False
    if not domains:
        return True
    caps = domain_sums(levels, levels.alias[request.max_domains_level], units)
    best = np.sort(caps)[::-1][: request.max_domains]  # ranks in at most max_domains domains
    return int(best.sum()) >= want


def rank_hosts(request: Request, per_host: np.ndarray, host_gpus: np.ndarray) -> np.ndarray:
    """The hosts that can take one rank of a ``nodes`` request with ``per_host`` GPUs free (bool per host)."""
    need = request.gpus_per_node
    if request.whole_hosts:
        ok = (per_host == host_gpus) & (host_gpus > 0)
        if need is not None:
            ok &= host_gpus == need
        return ok
    return per_host >= (need or 1)


def gang_gpus(job: Job, fab) -> int:
    """The GPUs ``job`` takes on ``fab``: :attr:`Job.gpus`, except for a ``nodes=N, whole_hosts``
    request without ``gpus_per_node`` (``Job.gpus`` 0), which takes every GPU of ``N`` hosts: counted
    as the GPUs of the ``N`` smallest hosts it may use (model, features, include, exclude), the least
    it can hold (hosts it lacks count as the fabric's largest)."""
    if job.gpus or job.request.nodes is None:
        return job.gpus
    r = job.request
    key = (r.nodes, r.gpu_model, tuple(r.features), r.include, r.exclude)
    memo = _GANG_GPUS.setdefault(fab, {})
    if key not in memo:
        lv = fabric_levels(fab)
        ok = _type_ok(fab, r.gpu_model, tuple(r.features)) & (lv.host_gpus > 0)
        pos = fab.host_pos
        if r.include:
            ok &= np.isin(np.arange(ok.size), [pos[h] for h in select(r.include, pos)])
        if r.exclude:
            ok[[pos[h] for h in select(r.exclude, pos)]] = False
        sizes = np.sort(lv.host_gpus[ok])[: r.nodes]
        memo[key] = int(sizes.sum()) + (r.nodes - sizes.size) * max(int(lv.host_gpus.max(initial=1)), 1)
    return memo[key]


_GANG_GPUS: WeakKeyDictionary = WeakKeyDictionary()  # per fabric: request fields -> GPUs


def free_in_reach(request: Request, free: np.ndarray, fab) -> int:
    """The GPUs of the bool mask ``free`` on hosts ``request`` may use (its ``include`` and ``exclude``)."""
    if not request.include and not request.exclude:
        return int(np.count_nonzero(free))
    pos = fab.host_pos
    ok = np.zeros(len(pos), dtype=bool) if request.include else np.ones(len(pos), dtype=bool)
    if request.include:
        ok[[pos[h] for h in select(request.include, pos)]] = True
    if request.exclude:
        ok[[pos[h] for h in select(request.exclude, pos)]] = False
    return int(np.count_nonzero(free & ok[fab.index.gpu_host]))


def compact_job(job: Job, fab) -> Job:
    """``job`` constrained to the fewest domains of the lowest multi-host level that can hold it
    (``max_domains`` at that level, like Slurm's ``--switches``): enough domains for its GPUs and,
    for a ``nodes=N`` request, for its hosts (``N`` over the most hosts a domain has that can take
    one rank: 36 hosts need two 18-host NVL72 racks even when their GPUs fit one)."""
    lv = fabric_levels(fab)
    if len(lv.chain) < 2:
        return job
    level, dom = lv.chain[1], lv.host_dom[:, 1]
    r = job.request
    # only the hosts it may get count (include=, exclude=: e.g. the hosts of its reservation, which may
    # span two leaves): a goal no placement could ever meet would hold it for the whole wait
    allowed = np.ones(lv.host_gpus.size, bool)
    pos = fab.host_pos
    if r.include:
        allowed &= np.isin(np.arange(allowed.size), [pos[h] for h in select(r.include, pos)])
    if r.exclude:
        allowed[[pos[h] for h in select(r.exclude, pos)]] = False
    k = 1
    if job.gpus:
        k = _domains_for(job.gpus, np.bincount(dom, weights=lv.host_gpus * allowed))
    if r.nodes is not None:  # one rank a host: hosts with GPUs (and gpus_per_node of them, if set)
        fits = lv.host_gpus >= max(r.gpus_per_node or 1, 1)
        if r.whole_hosts and r.gpus_per_node is not None:
            fits = lv.host_gpus == r.gpus_per_node
        k = max(k, _domains_for(r.nodes, np.bincount(dom, weights=fits & allowed)))
    return replace(job, request=r.model_copy(update={"max_domains": k, "max_domains_level": level}))


def _domains_for(need: int, per_dom: np.ndarray) -> int:
    """The fewest domains of capacities ``per_dom`` that hold ``need`` if all were as large as the largest."""
    return max(1, int(np.ceil(need / max(per_dom.max(initial=1), 1))))


@dataclass
class SolverPlacer:
    """Place with a named solver of :mod:`fabric_hpc.placement` (memoised; None when infeasible)."""

    solver: str = "greedy"
    options: SolveOptions = field(default_factory=lambda: SolveOptions(time_limit_s=0.5))
    memo_size: int = 4096
    calls: int = 0
    solver_calls: int = 0
    #: Wall time spent inside the placement solver (s).
    solver_s: float = 0.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:  # not on first use, deep inside a replay
            raise ConfigError(f"SolverPlacer: unknown solver {self.solver!r}",
                              hint=f"solvers: {', '.join(SOLVERS)}")
        if not isinstance(self.options, SolveOptions):
            raise ConfigError(f"SolverPlacer: options must be SolveOptions, not {type(self.options).__name__}",
                              hint="e.g. SolveOptions(time_limit_s=0.5)")
        self.name = self.solver
        self._memo: OrderedDict[tuple, object] = OrderedDict()  # Placement, GPU names or None
        self._fab: object = None  # the fabric the memo is about (a policy may be reused on another)

    def place(self, job: Job, state: ClusterState) -> Placement | None:
        self.calls += 1
        key = self._key(job, state)
        if key is None:
            return None
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]  # type: ignore[return-value]
        result = self._timed(lambda: self._solve(job, state))
        self._remember(key, result)
        return result

    def fit(self, job: Job, state: ClusterState) -> tuple[str, ...] | None:
        """The GPUs :meth:`place` would choose, for callers that need nothing else (reservation
        searches): the greedy solver then skips the cost evaluation of a full placement."""
        self.calls += 1
        key = self._key(job, state)
        if key is None:
            return None
        for k in (key, (*key, "fit")):
            if k in self._memo:
                self._memo.move_to_end(k)
                hit = self._memo[k]
                return hit.gpus if isinstance(hit, Placement) else hit
        if self.solver != "greedy":
            placement = self.place(job, state)
            return None if placement is None else placement.gpus

        def solve() -> tuple[str, ...] | None:
            from fabric_hpc.placement.greedy import greedy_gpus
            from fabric_hpc.placement.problem import Problem

            idx = greedy_gpus(Problem(state.fab, state, job.request))
            return None if idx is None else tuple(map(state.fab.gpus.__getitem__, idx.tolist()))

        result = self._timed(solve)
        self._remember((*key, "fit"), result)
        return result

    def _key(self, job: Job, state: ClusterState) -> tuple | None:
        """The memo key, or None when the counts alone rule a placement out."""
        if state.fab is not self._fab:  # the same free mask means other GPUs on another fabric
            self._memo.clear()
            self._fab = state.fab
        free = state.free
        lv = fabric_levels(state.fab)
        if not may_fit(job.request, free, state.fab.index.gpu_host, lv.host_gpus, lv):
            return None
        return request_key(job.request), np.packbits(free).tobytes()

    def _solve(self, job: Job, state: ClusterState) -> Placement | None:
        try:
            return place(state.fab, state, job.request, solver=self.solver, options=self.options)
        except PlacementInfeasible:
            return None

    def _timed(self, fn):
        self.solver_calls += 1
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.solver_s += time.perf_counter() - t0

    def _remember(self, key: tuple, result: object) -> None:
        self._memo[key] = result
        if len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
