"""One entry point, the algorithm as a parameter: ``place(fab, state, request, solver="cpsat")``."""

from __future__ import annotations

from collections.abc import Callable

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import emit
from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cost import CostWeights
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import Request, parse_request
from fabric_hpc.placement.state import ClusterState
from fabric_hpc.topology import Fabric


_TABLE: dict[str, Callable[[Problem, SolveOptions], Placement]] = {}


def _solvers() -> dict[str, Callable[[Problem, SolveOptions], Placement]]:
    """Solver name -> function; imported on first use (cpsat pulls in OR-Tools), then kept."""
    if not _TABLE:
        _TABLE.update(_import_solvers())
    return _TABLE


def _import_solvers() -> dict[str, Callable[[Problem, SolveOptions], Placement]]:
    from fabric_hpc.placement.cpsat import cpsat
    from fabric_hpc.placement.greedy import greedy
    from fabric_hpc.placement.slurm import slurm_block, slurm_tree

    return {"cpsat": cpsat, "greedy": greedy, "slurm-tree": slurm_tree, "slurm-block": slurm_block}


SOLVERS = ("cpsat", "greedy", "slurm-tree", "slurm-block")


def place(fab: Fabric, state: ClusterState, request: Request | str, *, solver: str = "cpsat",
          options: SolveOptions | None = None, weights: CostWeights | None = None) -> Placement:
    """Choose GPUs for a gang. Does not change ``state`` (call ``state.allocate`` to commit).

    Raises :class:`PlacementInfeasible` (exit code 4) with a structured ``explanation`` when the
    request cannot be placed now, :class:`~fabric_hpc.errors.ConfigError` when it is invalid.
    """
    if isinstance(request, str):
        request = parse_request(request)
    table = _solvers()
    if solver not in table:
        raise ConfigError(f"unknown solver {solver!r}", hint=f"solvers: {', '.join(SOLVERS)}")
    problem = Problem(fab, state, request, weights)
    try:
        placement = table[solver](problem, options or SolveOptions())
    except PlacementInfeasible as exc:
        exc.explanation.setdefault("solver", solver)
        emit("placement.infeasible", solver=solver, explanation=exc.explanation)
        raise
    emit("placement.decided", solver=solver, request=request.describe(), hosts=len(placement.hosts),
         gpus=len(placement.gpus), cost=placement.cost, optimal=placement.optimal, time_s=placement.time_s)
    return placement
