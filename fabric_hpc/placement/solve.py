"""One entry point, the algorithm as a parameter: ``place(fab, state, request, solver="cpsat")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import emit
from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cost import CostWeights
from fabric_hpc.placement.explain import network_fails
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import Request, parse_request
from fabric_hpc.placement.state import ClusterState, check_fabric, check_state
from fabric_hpc.topology import Fabric
from fabric_hpc.validation import parse_model


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


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping of its fields or its own type, got {type(value).__name__}")
    return value


def place(fab: Fabric, state: ClusterState, request: Request | str | Mapping[str, Any], *, solver: str = "cpsat",
          options: SolveOptions | Mapping[str, Any] | None = None,
          weights: CostWeights | Mapping[str, Any] | None = None) -> Placement:
    """Choose GPUs for a gang. Does not change ``state`` (call ``state.allocate`` to commit).
    ``request``, ``options`` and ``weights`` may also be given as mappings of their fields.

    Raises :class:`PlacementInfeasible` (exit code 4) with a structured ``explanation`` when the
    request cannot be placed now, :class:`~fabric_hpc.errors.ConfigError` when it is invalid.
    """
    if not isinstance(request, Request):
        request = parse_request(request if isinstance(request, str) else _mapping(request, "request"))
    check_fabric(fab, "place()")
    check_state(state, fab, "place()")
    if options is not None and not isinstance(options, SolveOptions):
        options = SolveOptions.of(_mapping(options, "options"))
    if weights is not None and not isinstance(weights, CostWeights):
        weights = parse_model(CostWeights, _mapping(weights, "weights"), source="weights")
    fn = _solver(solver)
    problem = Problem(fab, state, request, weights)
    try:
        placement = fn(problem, options or SolveOptions())
        failed = network_fails(problem, placement)
        if failed is not None:  # the best found cannot run (hosts without a NIC)
            raise failed
    except PlacementInfeasible as exc:
        exc.explanation.setdefault("solver", solver)
        emit("placement.infeasible", solver=solver, explanation=exc.explanation)
        raise
    emit("placement.decided", solver=solver, request=request.describe(), hosts=len(placement.hosts),
         gpus=len(placement.gpus), cost=placement.cost, optimal=placement.optimal, time_s=placement.time_s)
    return placement
