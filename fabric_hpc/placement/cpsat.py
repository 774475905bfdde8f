"""``cpsat``: OR-Tools CP-SAT minimising the cost model under every constraint.

Decisions are *items*: candidate hosts, or — when there are more than ``host_item_limit`` of them
and no constraint looks below the lowest domain level — whole lowest-level domains (an SU leaf,
an NVL72 rack) with an integer count and a precomputed cost table (the k cheapest hosts of the
domain: exact in nodes mode, a best-fit fill in total mode). That is the hierarchical
decomposition: domains first, then hosts inside the chosen domains, then GPUs inside hosts
(``Problem.pick_gpus``), so the model grows with the number of domains, not of GPUs.

Per item ``c_i`` (units taken) and ``u_i = [c_i > 0]``; per domain ``y_{l,d}``; per level
``s_l = [domains(l) ≥ 2]``. Cost = Σ table_i[c_i] + Σ_l span_w(l)·Σ_d y_{l,d} + break_w·Σ pristine y
+ comm(tier of the highest level crossed) — the same numbers ``cost.evaluate`` computes, scaled to
integers. The collective comes first (lexicographic), solved in two phases: its bound alone, then
the whole cost with the bound fixed (``_solve_lex``). Greedy's answer is the hint; one worker, a
fixed seed and a deterministic work budget (the answer does not depend on machine load); at the
limit the best feasible answer is returned with ``optimal=False``. The final answer is never worse
than greedy's, slurm-tree's or slurm-block's on the exact cost. The model has no term for the running
jobs' traffic (``contention``); greedy's answer, which then also fills around it
(:mod:`~fabric_hpc.placement.busy`), is the hint and in that comparison.
"""

from __future__ import annotations

from collections import Counter

import math
import time
from dataclasses import dataclass

import numpy as np

from ortools.sat.python import cp_model

from fabric_hpc.placement.contract import Placement, PlacementInfeasible, SolveOptions
from fabric_hpc.placement.cost import least_tp_part, lex_key
from fabric_hpc.placement.cpsat_comm import comm_lower_bound
from fabric_hpc.placement.cpsat_scale import (REST_MAX, SCALE, coef, fit_int64, rest_range, rest_scale,
                                              scale_notes)
from fabric_hpc.placement.cpsat_solve import _guard_notes, _solve_lex, wall_guard_s
from fabric_hpc.placement.cpsat_symmetry import interchangeable, order_classes, sorted_hint
from fabric_hpc.placement.explain import diagnose, relaxable, unit_name
from fabric_hpc.placement.greedy import greedy
from fabric_hpc.placement.problem import Problem

NODES_HOST_ITEM_LIMIT = 16


@dataclass
class Items:
    level: int  # chain level of the items (0: hosts)
    members: list[np.ndarray]  # hosts of each item, in fill order
    dom: np.ndarray  # [I, chain] domain ids
    cap: np.ndarray  # [I] max units
    cost: list[np.ndarray]  # cost table per item (index: units taken)
    hosts_used: list[np.ndarray]  # hosts used per units taken


def cpsat(p: Problem, options: SolveOptions | None = None) -> Placement:
    options = options or SolveOptions()
    t0 = time.perf_counter()
    diagnose(p)
    try:
        warm: Placement | None = greedy(p, options)
    except PlacementInfeasible:
        warm = None
    items = build_items(p, options)
    scale = rest_scale(p, items)
    model, var, t_expr, (lex, rest) = _model_parts(p, items, warm, scale)
    objective, wide = fit_int64(model, t_expr, lex, rest)
    if objective is None:
        return _too_large(p, warm, t0, wide, {"items": len(items.cap)}, options)
    status, solver, phases = _solve_lex(model, var, t_expr, objective, options, t0 + wall_guard_s(options))
    stats = {"items": len(items.cap), "item_level": p.levels.chain[items.level], "status": solver.StatusName(status),
             "objective": (solver.ObjectiveValue() / scale
                           if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None),
             "bound": solver.BestObjectiveBound() / scale if phases.get("ran") else None,
             "wall_s": phases["wall"],
             "deterministic_time": phases["dtime"], "phases": phases["names"],
             "warm_cost": warm.cost if warm else None, "wall_guard_hit": phases["guard"]}
    guard = _guard_notes(phases, options)
    if status == cp_model.INFEASIBLE:
        raise PlacementInfeasible(f"no placement satisfies {p.request.describe()}: each constraint alone can be "
                                  "met but not all together (proven by CP-SAT)", explanation={
                                      "constraint": "combination", "solver": "cpsat", "unit": unit_name(p),
                                      "proven": True}, hint=_relax_hint(p.request))
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    if not found and "kept" not in phases:
        if warm is None:
            raise PlacementInfeasible(f"cpsat found no placement for {p.request.describe()} within "
                                      f"{options.time_limit_s:g} s", explanation={
                                          "constraint": "time_limit", "solver": "cpsat", "unit": unit_name(p)},
                                      hint="raise the time limit")
        return _relabel(warm, t0, False, ("time limit hit before CP-SAT found a solution: greedy's answer",
                                          *guard), stats)
    if found:
        values = [solver.Value(v) for v in var]
        t_lin = int(solver.Value(t_expr)) if not isinstance(t_expr, int) else 0
    else:
        values, t_lin = phases["kept"]
    counts = _decode(p, items, values)
    exact = items.level == 0 or p.nodes_mode
    stats["comm_us_bound"] = t_lin
    notes = [] if exact else ["hierarchical model: optimal over domain counts, hosts filled best-fit"]
    notes += [*scale_notes(scale, wide), *guard]
    if not found:
        notes.append("time limit hit in CP-SAT's phase 2 (the whole cost) before a solution: phase 1's "
                     "answer (its best collective; the placement terms not optimised)")
    if len(p.patterns) > 1:
        notes.append(f"rail pattern {p.pattern} chosen by greedy among {len(p.patterns)}")
    placed = p.finish(counts, "cpsat", t0, optimal=None, notes=tuple(notes), stats=stats)
    solved = status == cp_model.OPTIMAL and phases["proven"] and exact and len(p.patterns) <= 1
    return _best_of(p, _claim(p, placed, solved, t_lin, stats), warm, options, t0, stats)


def _relax_hint(r) -> str:
    """What to relax when the request's constraints cannot hold together: those it sets."""
    names = relaxable(r)
    if not names:
        return "relax within, max_domains, slices or rail_aligned"
    return f"relax one of {', '.join(names)}"


def _claim(p: Problem, placed: Placement, solved: bool, t_lin: int, stats: dict) -> Placement:
    """``placed`` with ``optimal`` set: CP-SAT proved the optimum of its model (``solved``) and the
    model's collective bound ``t_lin`` (µs) is tight here (every other placement's exact cost is at
    least its bound, which is at least this optimum). With ``tp`` / ``pp`` the bound is of the
    data-parallel part only (``stats["comm_dp_optimal"]``), and the answer is proven only where its
    TP and send parts are the least any placement has (:func:`_groups_least`), else noted."""
    from dataclasses import replace

    bd = placed.breakdown
    proven = solved and (round(bd.get("comm_dp", bd["comm_ms"]) * 1000) == t_lin or p.weights.comm <= 0)
    notes = placed.notes
    if "comm_dp" in bd and p.weights.comm > 0:
        stats["comm_dp_optimal"] = proven
        if proven and not _groups_least(p, placed):
            proven = False
            notes += ("optimal on the data-parallel all-reduce, then the placement terms; not proven with "
                      "the stage-to-stage sends and TP all-reduces (comm_pp, comm_tp), which CP-SAT's "
                      "model leaves out",)
    return replace(placed, optimal=proven, notes=notes)


def _groups_least(p: Problem, placed: Placement) -> bool:
    """Whether ``placed``'s TP and send parts (``comm_tp``, ``comm_pp``) are the least any placement
    of the request can have, so that the optimum of CP-SAT's model (the data-parallel part, then the
    placement terms) is the full cost's: the TP part at :func:`~fabric_hpc.placement.cost.least_tp_part`
    and no stages (no bound of the sends is known, so a ``pp`` answer is never proven)."""
    return p.pp <= 1 and placed.breakdown["comm_tp"] <= least_tp_part(p, len(placed.gpus))


def _best_of(p: Problem, placed: Placement, warm: Placement | None, options: SolveOptions, t0: float,
             stats: dict) -> Placement:
    """CP-SAT's answer, unless greedy's, slurm-tree's or slurm-block's is cheaper on the exact cost
    (a portfolio: cpsat's modelled collective is never slower than theirs). Greedy's answer of the
    same exact cost is kept instead (as optimal as CP-SAT's): among equal placements every solver
    then takes the first domains, not CP-SAT's search's last."""
    best, why = placed, ""
    if warm is not None and lex_key(warm.breakdown) == lex_key(placed.breakdown) and warm.gpus != placed.gpus:
        placed = _relabel(warm, t0, bool(placed.optimal), placed.notes + (
            "greedy's answer of the same cost (equal placements: the first domains, as the other solvers)",),
            stats)
        best = placed
    if warm is not None and lex_key(warm.breakdown) < lex_key(best.breakdown):
        best, why = warm, "greedy's answer is cheaper on the exact cost model"
    from fabric_hpc.placement.slurm import slurm_block, slurm_tree

    for name, fn in (("slurm-tree", slurm_tree), ("slurm-block", slurm_block)):
        try:
            other = fn(p.fresh(), options)
        except PlacementInfeasible:
            continue
        if lex_key(other.breakdown) < lex_key(best.breakdown):
            best, why = other, f"{name}'s answer is cheaper on the exact cost model"
    return placed if best is placed else _relabel(best, t0, False, (why,), stats)


def _relabel(pl: Placement, t0: float, optimal: bool, notes: tuple[str, ...], stats: dict) -> Placement:
    from dataclasses import replace

    return replace(pl, solver="cpsat", optimal=optimal, time_s=time.perf_counter() - t0, notes=notes, stats=stats)


# -- items ---------------------------------------------------------------------------------------
def build_items(p: Problem, options: SolveOptions) -> Items:
    lv = p.levels
    levels_used = [x for x in (p.within, p.max_level, p.slice_level) if x is not None]
    # nodes mode: hosts of one lowest-level domain differ only by an additive cost, so the
    # domain-level model is exact and much smaller; total mode: only above host_item_limit
    limit = NODES_HOST_ITEM_LIMIT if p.nodes_mode else options.host_item_limit
    use_units = (len(p.cand) > min(limit, options.host_item_limit) and len(lv.chain) > 1
                 and all(x >= 1 for x in levels_used))
    return _unit_items(p) if use_units else _host_items(p)


def _host_items(p: Problem) -> Items:
    lv = p.levels
    cand = p.cand
    if p.nodes_mode and len(cand) and len(lv.chain) > 1:  # symmetry: only the N cheapest per lowest domain
        cost = p.host_cost(cand)
        dom = lv.host_dom[cand, 1]
        order = np.lexsort((cost, dom))
        ranks = np.empty(len(cand), np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(dom[order])) + 1]
        ranks[order] = np.arange(len(cand)) - np.repeat(starts, np.diff(np.r_[starts, len(cand)]))
        cand = cand[ranks < p.units]
    elif len(cand) and len(lv.chain) > 1:  # interchangeable hosts: same domain, cap and free count
        cand = _prune_total(p, cand)
    if p.nodes_mode:
        costs = [np.array([0.0, c]) for c in p.host_cost(cand)]
    else:
        costs = [p.host_cost_table[h, : p.cap[h] + 1] for h in cand]
    used = [np.minimum(np.arange(len(c)), 1) for c in costs]
    return Items(0, [np.array([h]) for h in cand], lv.host_dom[cand], p.cap[cand].astype(np.int64), costs, used)


def _prune_total(p: Problem, cand: np.ndarray) -> np.ndarray:
    """Keep at most ceil(units / cap) hosts of each (lowest domain, cap, free GPUs) class (with
    ``pp`` stages, enough for each stage on hosts of its own: ``pp · ceil(stage / cap)``); with
    slices inside one host (``tp`` groups on PCIe or DGX hosts) ``cap`` counts whole slices only."""
    keys = np.stack([p.levels.host_dom[cand, 1], p.cap[cand], p.free_all[cand]], axis=1)
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(inv[order])) + 1]
    rank = np.empty(len(cand), np.int64)
    rank[order] = np.arange(len(cand)) - np.repeat(starts, np.diff(np.r_[starts, len(cand)]))
    cap = p.cap[cand]
    if p.slice_level == 0:  # slices (tp groups) inside one host: a host holds whole slices only
        cap = cap // p.slice_size * p.slice_size
    cap = np.maximum(cap, 1)
    need = -(-p.units // cap)
    if p.pp > 1:
        need = np.maximum(need, p.pp * -(-(p.units // p.pp) // cap))
    return cand[rank < need]


def _unit_items(p: Problem) -> Items:
    lv = p.levels
    cand = p.cand
    dom = lv.host_dom[cand, 1]
    members, costs, used, caps, rows = [], [], [], [], []
    for d in np.unique(dom):
        hs = cand[dom == d]
        if p.nodes_mode:
            c = p.host_cost(hs)
            order = np.argsort(c, kind="stable")
            hs = hs[order][: p.units]
            table = np.r_[0.0, np.cumsum(c[order][: p.units])]
            hused = np.arange(len(table))
        else:
            hs = hs[np.lexsort((p.host_cost_table[hs, p.cap[hs]], -p.cap[hs]))]
            table, hused = _fill_table(p, hs)
        members.append(hs)
        costs.append(table)
        used.append(hused)
        caps.append(len(table) - 1)
        rows.append(lv.host_dom[hs[0]])
    return Items(1, members, np.array(rows).reshape(-1, len(lv.chain)), np.array(caps, np.int64), costs, used)


def _fill_plan(p: Problem, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Taking g GPUs from hosts ``hs`` (most free first): the first k hosts whole, the remainder
    from the best-fit host among the rest. Returns (k[g], partial host position[g] or -1, cost[g])."""
    caps = p.cap[hs]
    cum = np.cumsum(caps)
    full_cost = np.r_[0.0, np.cumsum(p.host_cost_table[hs, caps])]
    g = np.arange(min(int(cum[-1]), p.units) + 1)
    k = np.searchsorted(cum, g, side="right")
    rem = g - np.where(k > 0, cum[np.maximum(k - 1, 0)], 0)
    maxg = p.host_cost_table.shape[1]
    cost_r = np.where(caps[:, None] >= np.arange(maxg)[None, :], p.host_cost_table[hs], np.inf)
    best_pos = np.full((len(hs) + 1, maxg), -1, np.int64)  # suffix argmin per remainder size
    best_val = np.full((len(hs) + 1, maxg), np.inf)
    for i in range(len(hs) - 1, -1, -1):
        better = cost_r[i] <= best_val[i + 1]
        best_val[i] = np.where(better, cost_r[i], best_val[i + 1])
        best_pos[i] = np.where(better, i, best_pos[i + 1])
    kk = np.minimum(k, len(hs))
    pos = np.where(rem > 0, best_pos[kk, rem], -1)
    partial = np.where(rem > 0, best_val[kk, rem], 0.0)
    return k, pos, full_cost[k] + partial


def _fill_table(p: Problem, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, pos, cost = _fill_plan(p, hs)
    return cost, k + (pos >= 0)


def _decode(p: Problem, items: Items, values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for i, v in enumerate(values):
        if v <= 0:
            continue
        hs = items.members[i]
        if items.level == 0:
            out[int(hs[0])] = v * (p.gpn or 1) if p.nodes_mode else v
        elif p.nodes_mode:
            out.update({int(h): p.gpn for h in hs[:v]})
        else:
            k, pos, _ = _fill_plan(p, hs)
            out.update({int(h): int(p.cap[h]) for h in hs[: k[v]]})
            if pos[v] >= 0:
                out[int(hs[pos[v]])] = v - int(p.cap[hs[: k[v]]].sum())
    return out


# -- model ---------------------------------------------------------------------------------------
def _model(p: Problem, items: Items, warm: Placement | None, scale: float = SCALE):
    """(model minimising ``LEX·T + rest``, item counts, T, that objective)."""
    m, c, t, (lex, rest) = _model_parts(p, items, warm, scale)
    objective = lex * t + rest
    m.Minimize(objective)
    return m, c, t, objective


def _model_parts(p: Problem, items: Items, warm: Placement | None, scale: float = SCALE):

    m = cp_model.CpModel()
    lv, w = p.levels, p.weights
    n_items = len(items.cap)
    if p.request.whole_hosts and not p.nodes_mode:  # whole hosts only: an item's count is a sum of them
        c = [m.NewIntVarFromDomain(cp_model.Domain.FromValues(_whole_counts(p, items, i)), f"c{i}")
             for i in range(n_items)]
    else:
        c = [m.NewIntVar(0, int(items.cap[i]), f"c{i}") for i in range(n_items)]
    u = [m.NewBoolVar(f"u{i}") for i in range(n_items)]
    obj = []
    for i in range(n_items):
        m.Add(c[i] <= int(items.cap[i]) * u[i])
        m.Add(c[i] >= u[i])
        obj.append(_table_term(m, c[i], items.cost[i], f"k{i}", scale))
    m.Add(sum(c) == p.units)
    hosts = _hosts_expr(m, p, items, c, u)
    spans, ys = {0: hosts}, {}
    for j in range(max(items.level, 1), len(lv.chain)):
        if j == items.level:
            spans[j] = sum(u)
            obj.append(coef(scale * w.pristine_break) * sum(
                u[i] for i in range(n_items) if p.pristine[j][items.dom[i, j]]))
            continue
        doms = np.unique(items.dom[:, j])
        y = {int(d): m.NewBoolVar(f"y{j}_{d}") for d in doms}
        for i in range(n_items):
            m.Add(u[i] <= y[int(items.dom[i, j])])
        ys[j] = y
        spans[j] = sum(y.values())
        obj.append(coef(scale * w.pristine_break) * sum(v for d, v in y.items() if p.pristine[j][d]))
    for j, expr in spans.items():
        obj.append(coef(scale * w.span_weight(j)) * expr)
    t = comm_lower_bound(m, p, items, c, u, spans, ys)
    _constraints(m, p, items, c, spans)
    classes = interchangeable(p, items)
    order_classes(m, c, classes)
    lex = _lex_weight(p, items, scale)  # the collective first (lexicographic), µs: LEX·T + rest
    if warm is not None:
        _hint(m, p, items, c, u, warm, classes)
    return m, c, t, (lex, sum(obj))


def _whole_counts(p: Problem, items: Items, i: int) -> list[int]:
    """GPU counts item ``i`` may give under whole_hosts in total mode: 0 or its host's GPUs (a host
    item); 0 or its first k hosts whole, in the fill order :func:`_decode` follows (a domain item)."""
    if items.level == 0:
        return [0, int(items.cap[i])]
    cum = np.cumsum(p.cap[items.members[i]])
    return [0, *(int(v) for v in cum[cum <= items.cap[i]])]


def _hosts_expr(m, p: Problem, items: Items, c, u):
    """Hosts used (only ``[hosts ≥ 2]`` is read: the host level's span weight is 0). An element
    table per domain item only when it matters: a nodes request's count is its hosts, and a gang
    larger than any one host's free capacity spans two hosts whatever is chosen (the constant 2)."""
    if not items.level:
        return sum(u)
    if p.nodes_mode:
        return sum(c)
    if p.units > int(p.cap[p.cand].max(initial=0)):
        return 2
    return sum(_table_term(m, c[i], items.hosts_used[i], f"h{i}", scale=1) for i in range(len(c)))


def _table_term(m, var, table: np.ndarray, name: str, scale: float = SCALE):
    vals = [coef(scale * float(t)) for t in table]
    if len(vals) == 2:
        return vals[0] + (vals[1] - vals[0]) * var
    t = m.NewIntVar(min(vals), max(vals), name)
    m.AddElement(var, vals, t)
    return t


def _lex_weight(p: Problem, items: Items, scale: float = SCALE) -> int:
    """More than the range of the placement terms (scaled): one µs of collective outweighs them all."""
    return 2 * int(math.ceil(min(scale * rest_range(p, items), REST_MAX))) + 1


def _too_large(p: Problem, warm: Placement | None, t0: float, why: str, stats: dict,
               options: SolveOptions) -> Placement:
    """Greedy's answer where CP-SAT's integer model cannot hold the inputs' magnitudes (``why``);
    where greedy found none, greedy once more on the untouched problem: its PlacementInfeasible (what it
    could not meet), or, should it place there, that answer."""
    if warm is None:
        warm = greedy(p.fresh(), options)  # as a rule raises greedy's own PlacementInfeasible
    note = f"CP-SAT's integer model cannot hold these magnitudes ({why}): greedy's answer"
    return _relabel(warm, t0, False, (note,), {**stats, "status": "MODEL_INVALID", "warm_cost": warm.cost})


def _constraints(m, p: Problem, items: Items, c, spans) -> None:
    r = p.request
    if p.within is not None:
        m.Add(spans[p.within] <= 1)
    if p.max_level is not None:
        m.Add(spans[p.max_level] <= int(r.max_domains))
    if p.slice_level is not None:
        sl = p.slice_level
        for d in np.unique(items.dom[:, sl]):
            members = [c[i] for i in np.flatnonzero(items.dom[:, sl] == d)]
            z = m.NewIntVar(0, int(p.slices), f"z{sl}_{d}")
            m.Add(sum(members) == p.slice_size * z)


def _hint(m, p: Problem, items: Items, c, u, warm: Placement, classes: list[list[int]]) -> None:
    host_of = {h: i for i, hs in enumerate(items.members) for h in hs.tolist()}
    per_item = np.zeros(len(items.cap), np.int64)
    gpus_on = Counter(p.fab.index.gpu_host[p.fab.gpu_pos[g]] for g in warm.gpus)  # host index -> GPUs
    for h in warm.hosts:
        i = host_of.get(p.fab.host_pos[h])
        if i is None:
            return
        per_item[i] += 1 if p.nodes_mode else gpus_on[p.fab.host_pos[h]]
    per_item = sorted_hint(per_item, classes)  # the same cost, in the order the classes' constraints keep
    for i in range(len(items.cap)):
        m.AddHint(c[i], int(min(per_item[i], items.cap[i])))
        m.AddHint(u[i], int(per_item[i] > 0))
