"""Topology-aware gang placement: explainable, Slurm baselines and an OR-Tools CP-SAT optimiser.

Public surface::

    from fabric_hpc.placement import ClusterState, parse_request, place
    state = ClusterState.load(fab, "state.json")
    p = place(fab, state, "nodes=4,gpus=8,within=leaf", solver="cpsat")
    p.gpus, p.cost, p.breakdown, p.optimal
    state.allocate("job-42", p.gpus)

Solvers: ``cpsat`` (default), ``greedy``, ``slurm-tree``, ``slurm-block``. See docs/placement.md.
"""

from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cost import CostWeights, fragmentation
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import Request, parse_request
from fabric_hpc.placement.solve import SOLVERS, place
from fabric_hpc.placement.state import ClusterState

__all__ = ["SOLVERS", "ClusterState", "CostWeights", "Placement", "PlacementInfeasible", "Problem", "Request",
           "SolveOptions", "fragmentation", "parse_request", "place"]
