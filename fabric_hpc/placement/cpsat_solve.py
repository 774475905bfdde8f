"""Running CP-SAT for :mod:`fabric_hpc.placement.cpsat`: the solver's parameters, the lexicographic
solve in two phases on one deterministic budget, and the wall-clock guard both phases share (a
safety net only: the answer depends on the deterministic work limit, not on the machine's load,
unless the guard says it was hit)."""

from __future__ import annotations

import math
import time

from ortools.sat.python import cp_model

from fabric_hpc.placement.contract import SolveOptions

#: CP-SAT's deterministic time over both phases per second of ``time_limit_s``: one deterministic
#: unit took 1.0–2.4 s of CPU here, presolve and LP included (docs/benchmarks.md, cpsat-speed)
DTIME_SHARE = 0.4
#: the wall-clock guard of one call, both CP-SAT solves together from the call's start: max(MIN,
#: PER_UNIT × time_limit_s) s. Only against runaway cases (presolve's work is hardly counted in the
#: deterministic time: ~4 s of it for 0.1 units at gpus=15000,pp=3 on a 16k SuperPOD)
WALL_GUARD_MIN_S = 30.0
WALL_GUARD_PER_UNIT = 30.0


def wall_guard_s(options: SolveOptions) -> float:
    """Seconds of wall clock one call's CP-SAT solves may take together (a safety net only)."""
    return max(WALL_GUARD_MIN_S, WALL_GUARD_PER_UNIT * options.time_limit_s)


def _guard_notes(phases: dict, options: SolveOptions) -> tuple[str, ...]:
    if not phases["guard"]:
        return ()
    return (f"wall-clock guard ({wall_guard_s(options):g} s) hit before CP-SAT's deterministic budget: "
            "this answer depends on the machine's load (a slow or busy machine; or lower --time-limit)",)


def _new_solver(options: SolveOptions, budget: float, wall_left: float = math.inf) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = options.workers
    prm.random_seed = options.seed
    # deterministic work limit (the answer does not depend on machine load); wall clock only as a guard
    prm.max_deterministic_time = max(0.0, budget)
    prm.max_time_in_seconds = max(0.0, min(wall_guard_s(options), wall_left))
    prm.relative_gap_limit = options.relative_gap
    prm.cp_model_probing_level = 0  # probing the element tables costs seconds and buys little here
    return solver


def _solve_lex(model, var, t_expr, objective, options: SolveOptions, deadline: float = math.inf):
    """Minimise ``LEX·T + rest`` lexicographically in two CP-SAT solves on one deterministic budget
    (``DTIME_SHARE × time_limit_s``): first T alone (small: the cost tables drop out in presolve),
    then the whole objective with ``T ≤ T*`` and phase 1's answer as the hint. The same optimum as
    one solve of the weighted sum (the weight makes T lexicographically first), but the second
    phase's search space is cut to the placements with the best collective, where the weighted
    sum's LP bound was too weak to prove anything at 16k GPUs. Both solves share one wall-clock
    guard ending at ``deadline`` (``time.perf_counter()``); a phase with none of it left is not
    started (``phases["guard"]``). Returns (status, solver, phases)."""
    budget = DTIME_SHARE * options.time_limit_s
    phases = {"names": [], "dtime": 0.0, "wall": 0.0, "proven": True, "guard": False}
    if not isinstance(t_expr, int):
        model.Minimize(t_expr)
        solver = _new_solver(options, budget, deadline - time.perf_counter())
        # T alone is a small covering problem; the stronger LP proves it in a fraction of the budget
        # where the default stalled (NVL72 racks: host items with the channel bound's tables)
        solver.parameters.linearization_level = 2
        solver.parameters.relative_gap_limit = 0.0  # T* bounds phase 2: it must be T's optimum
        status = _run(solver, model, phases, "collective")
        if status == cp_model.INFEASIBLE:
            return status, solver, phases
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            phases["proven"] = status == cp_model.OPTIMAL
            t_star = int(round(solver.ObjectiveValue()))
            model.Add(t_expr <= t_star)
            # kept: returned if phase 2 finds nothing in what is left of the budget
            phases["kept"] = ([solver.Value(v) for v in var], t_star)
            # the whole of phase 1's solution as the hint (complete and feasible under T ≤ T*:
            # CP-SAT starts from it, where the item counts alone left it to be completed by search)
            model.ClearHints()
            for i, x in enumerate(solver.ResponseProto().solution):
                model.AddHint(model.GetIntVarFromProtoIndex(i), x)
        model.Minimize(objective)
    solver = _new_solver(options, max(budget - phases["dtime"], 0.1 * budget), deadline - time.perf_counter())
    return _run(solver, model, phases, "cost"), solver, phases


def _run(solver: cp_model.CpSolver, model, phases: dict, name: str):
    """One phase's solve, in ``phases``; not started where the wall-clock guard has nothing left."""
    prm = solver.parameters
    if prm.max_time_in_seconds <= 0:
        phases["names"].append(f"{name}:SKIPPED")
        phases["guard"], phases["ran"] = True, False
        return cp_model.UNKNOWN
    status = solver.Solve(model)
    phases["names"].append(f"{name}:{solver.StatusName(status)}")
    phases["dtime"] += solver.deterministic_time
    phases["wall"] += solver.WallTime()
    phases["ran"] = True
    wall_out = solver.WallTime() >= 0.99 * prm.max_time_in_seconds
    phases["guard"] |= wall_out and solver.deterministic_time < prm.max_deterministic_time
    return status
