"""One entry point, the algorithm as a parameter: ``place(fab, state, request, solver="cpsat")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import emit
from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cost import CostWeights
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import Request, parse_request
from fabric_hpc.placement.state import ClusterState
from fabric_hpc.topology import Fabric


#: solver name -> (module, function); a module is imported on first use (cpsat pulls in OR-Tools)
_WHERE = {"cpsat": ("fabric_hpc.placement.cpsat", "cpsat"), "greedy": ("fabric_hpc.placement.greedy", "greedy"),
          "slurm-tree": ("fabric_hpc.placement.slurm", "slurm_tree"),
          "slurm-block": ("fabric_hpc.placement.slurm", "slurm_block")}
_TABLE: dict[str, Callable[[Problem, SolveOptions], Placement]] = {}


def _solver(name: str) -> Callable[[Problem, SolveOptions], Placement]:
    fn = _TABLE.get(name)
    if fn is None:
        if name not in _WHERE:
            raise ConfigError(f"unknown solver {name!r}", hint=f"solvers: {', '.join(SOLVERS)}")
        module, attr = _WHERE[name]
        fn = _TABLE[name] = getattr(importlib.import_module(module), attr)
    return fn


SOLVERS = tuple(_WHERE)


def place(fab: Fabric, state: ClusterState, request: Request | str, *, solver: str = "cpsat",
          options: SolveOptions | None = None, weights: CostWeights | None = None) -> Placement:
    """Choose GPUs for a gang. Does not change ``state`` (call ``state.allocate`` to commit).

    Raises :class:`PlacementInfeasible` (exit code 4) with a structured ``explanation`` when the
    request cannot be placed now, :class:`~fabric_hpc.errors.ConfigError` when it is invalid.
    """
    if isinstance(request, str):
        request = parse_request(request)
    fn = _solver(solver)
    problem = Problem(fab, state, request, weights)
    try:
        placement = fn(problem, options or SolveOptions())
    except PlacementInfeasible as exc:
        exc.explanation.setdefault("solver", solver)
        emit("placement.infeasible", solver=solver, explanation=exc.explanation)
        raise
    emit("placement.decided", solver=solver, request=request.describe(), hosts=len(placement.hosts),
         gpus=len(placement.gpus), cost=placement.cost, optimal=placement.optimal, time_s=placement.time_s)
    return placement
