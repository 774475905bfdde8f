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
from dataclasses import dataclass, field

import numpy as np

from fabric_hpc.placement import ClusterState, Placement, PlacementInfeasible, SolveOptions, place
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import Job

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


def may_fit(request: Request, free: np.ndarray, gpu_host: np.ndarray, host_gpus: np.ndarray) -> bool:
    """Necessary condition for ``request`` to fit the bool mask ``free`` (never a false "no")."""
    least = request.nodes if request.nodes is not None else (request.gpus or 0)
    if request.nodes is not None and request.gpus_per_node is not None:
        least *= request.gpus_per_node
    if np.count_nonzero(free) < least:  # every branch below needs at least this many free GPUs
        return False
    per_host = np.bincount(gpu_host, weights=free, minlength=host_gpus.size)
    if request.nodes is not None:
        need = request.gpus_per_node
        if request.whole_hosts:
            ok = (per_host == host_gpus) & (host_gpus > 0)
            if need is not None:
                ok &= host_gpus == need
        else:
            ok = per_host >= (need or 1)
        return int(ok.sum()) >= request.nodes
    if request.whole_hosts:
        return int(per_host[(per_host == host_gpus)].sum()) >= (request.gpus or 0)
    return float(per_host.sum()) >= (request.gpus or 0)


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
        self.name = self.solver
        self._memo: OrderedDict[tuple[str, bytes], Placement | None] = OrderedDict()

    def place(self, job: Job, state: ClusterState) -> Placement | None:
        self.calls += 1
        free = state.free
        lv = fabric_levels(state.fab)
        if not may_fit(job.request, free, state.fab.index.gpu_host, lv.host_gpus):
            return None
        key = (request_key(job.request), np.packbits(free).tobytes())
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        self.solver_calls += 1
        t0 = time.perf_counter()
        try:
            result: Placement | None = place(state.fab, state, job.request, solver=self.solver, options=self.options)
        except PlacementInfeasible:
            result = None
        self.solver_s += time.perf_counter() - t0
        self._memo[key] = result
        if len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
        return result
