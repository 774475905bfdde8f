"""CP-SAT's linearisation of the collective model (``cost.modelled_comm_ms``), in whole µs.

``T = T_bw + T_lat`` with every term a lower bound of the model's ring all-reduce time, so the
CP-SAT objective ``LEX·T + rest`` never exceeds the exact lexicographic cost of a placement, and a
placement whose exact collective time equals its ``T`` at the optimum is proven optimal:

- one NVLink domain (``s = 0``): ``T_bw = B / (nvl · η_nvl)`` (exact), ``B = 2(n-1)/n · S``;
- several (``s = 1``): ``T_bw ≥ B / (min(mn, 32) · nic · η_net)`` where ``mn`` is the fewest GPUs a
  used NVLink domain gets (a domain cannot bring more NICs than GPUs: the channel bound), and
  ``T_bw ≥ (kx-1)/kx · B / (nvl · η_nvl)`` with ``kx`` the most GPUs a domain gets (NVLink share);
- a used domain ``d`` of a network level spanned twice or more: the ring leaves it once, so
  ``T_bw ≥ B / (its uplinks · η_net)`` (oversubscribed ToRs bind here; other jobs only slow it);
- ``T_lat = 2(n-1) · L(top level crossed)``: the fabric's rail-matched probe latency per level.

With ``pp`` pipeline stages each of the ``tp·pp`` data-parallel rings lies in one stage, which may
sit in fewer domains than the job: a network term of a level then holds only when no stage fits in
one domain of that level (``ns`` stage GPUs > the most GPUs any such domain has), so that every
stage crosses it. The channel bound stays valid then: the stage holding the fewest-GPU domain gets
at most its ``mn`` GPUs there. The NVLink-share term (``kx``) is dropped for ``pp`` > 1 (a domain's
GPUs may be split between stages).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.collective import CollectiveParams, fabric_net
from fabric_hpc.placement.levels import largest_domain_gpus

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


def comm_lower_bound(m, p: Problem, items, c, u, spans: dict, ys: dict):
    """A linear expression of T (µs) for the collective of ``p`` on CP-SAT items (0: none). With
    tensor-parallel groups of ``K = p.tp`` and ``P = p.pp`` pipeline stages the bound is of one
    data-parallel ring (``n/(K·P)`` ranks, ``1/(K·P)`` of the bytes, at most ``k/K`` of a domain's
    ``k`` GPUs): the slowest of the K·P rings is no faster (stages: the module doc)."""
    tp, pp = p.tp, p.pp
    n = p.units * (p.gpn or 1) // (tp * pp)
    if n < 2 or p.weights.comm <= 0:
        return 0
    prm = CollectiveParams()
    lv, fab = p.levels, p.fab
    cand_gpus = np.flatnonzero(np.isin(fab.index.gpu_host, p.cand))
    per_rank = 2.0 * (n - 1) / n * p.weights.message_mb * 2**20 / (tp * pp)
    crosses = _stages_cross(p)
    nvl = float(fabric_net(fab).cap[cand_gpus].max()) * prm.nvlink_eff
    nic = float(fab.index.gpu_nic_gbps[cand_gpus].max()) * prm.net_eff

    def us(gbps: float, share: float = 1.0) -> int:
        return int(math.floor(per_rank * share / (gbps * 1e9) * 1e6 + 1e-6)) if gbps > 0 else 0

    one = us(nvl)
    maxg = int(lv.host_gpus.max(initial=1))
    j_nvl = lv.alias.get("nvlink", 0)
    big = max(one, us(nic)) + 1
    t_bw = m.NewIntVar(0, big, "t_bw")
    s_nvl = _spans_two(m, spans, j_nvl, "s_nvl")
    m.Add(t_bw >= one).OnlyEnforceIf(s_nvl.Not())
    used, count = _nvl_domains(p, items, c, u, ys, j_nvl)
    hi = max(int(p.units * (p.gpn or 1)), 1)

    def ring(k: int) -> int:  # GPUs of one data-parallel ring among a domain's k
        return max(k // tp, 1)

    if used:
        mn, kx = m.NewIntVar(1, hi, "mn"), m.NewIntVar(1, hi, "kx")
        for y, g in zip(used, count, strict=True):
            m.Add(mn <= g + hi * (1 - y))
            m.Add(kx >= g - hi * (1 - y))
        t_nic = m.NewIntVar(0, big, "t_nic")
        m.AddElement(mn, [big] + [us(nic * min(ring(k), prm.max_channels)) for k in range(1, hi + 1)], t_nic)
        t_nvl = m.NewIntVar(0, big, "t_nvl")
        m.AddElement(kx, [0] + [us(nvl, (ring(k) - 1) / ring(k)) for k in range(1, hi + 1)], t_nvl)
        if crosses[j_nvl]:
            m.Add(t_bw >= t_nic).OnlyEnforceIf(s_nvl)
        if pp == 1:
            m.Add(t_bw >= t_nvl).OnlyEnforceIf(s_nvl)
    elif crosses[j_nvl]:  # NVLink domains below the items (hosts inside domain items, total-GPU mode): maxg
        m.Add(t_bw >= us(nic * min(ring(maxg), prm.max_channels))).OnlyEnforceIf(s_nvl)
    _uplinks(m, p, items, u, ys, spans, t_bw, us, prm, crosses)
    steps = 2 * (n - 1)
    lat = [int(math.floor(steps * x + 1e-6)) for x in _level_latency(p)]  # floors telescope exactly
    terms = [lat[0]]
    for j in range(len(lv.chain)):
        delta = lat[j + 1] - lat[j]
        if delta > 0 and crosses[j]:
            terms.append(delta * _spans_two(m, spans, j, f"s_lat{j}"))
    return t_bw + sum(terms)


def _spans_two(m, spans: dict, j: int, name: str):
    """A boolean equal to [domains spanned at chain level j ≥ 2] (False when j is not modelled)."""
    s = m.NewBoolVar(name)
    if j not in spans or isinstance(spans[j], int):
        m.Add(s == int(j in spans and spans[j] >= 2))
        return s
    m.Add(spans[j] >= 2).OnlyEnforceIf(s)
    m.Add(spans[j] <= 1).OnlyEnforceIf(s.Not())
    return s


def _nvl_domains(p: Problem, items, c, u, ys: dict, j_nvl: int) -> tuple[list, list]:
    """(used boolean, GPU count expression) per NVLink domain, where the items resolve them."""
    g = p.gpn or 1
    if j_nvl == items.level:
        return list(u), [ci * g for ci in c]
    if j_nvl > items.level and j_nvl in ys:
        doms = items.dom[:, j_nvl]
        return ([ys[j_nvl][int(d)] for d in ys[j_nvl]],
                [sum(c[i] for i in np.flatnonzero(doms == d)) * g for d in ys[j_nvl]])
    if p.nodes_mode:  # domains below the items: every host of a nodes request gets gpn GPUs
        return list(u), [g * ui for ui in u]
    return [], []


def _stages_cross(p: Problem) -> list[bool]:
    """Per chain level: whether every pipeline stage's rings must cross its domains (always, for
    ``pp`` = 1: the one stage is the job, and each term is enforced only when the job spans)."""
    lv = p.levels
    if p.pp == 1:
        return [True] * len(lv.chain)
    stage = p.units * (p.gpn or 1) // p.pp
    return [stage > largest_domain_gpus(lv, j) for j in range(len(lv.chain))]


def _uplinks(m, p: Problem, items, u, ys: dict, spans: dict, t_bw, us, prm: CollectiveParams,
             crosses: list[bool]) -> None:
    fab, lv = p.fab, p.levels
    specs = {gr.name: gr for gr in fab.spec.network.groups} if fab.spec.network else {}
    names = list(fab.groups)
    for j, name in enumerate(lv.chain):
        if name not in fab.levels or not crosses[j]:
            continue
        if j == items.level:  # the items are this level's domains
            used = [(int(items.dom[i, j]), u[i]) for i in range(len(u))]
        elif j in ys:
            used = list(ys[j].items())
        else:
            continue
        col = fab.levels.index(name)
        s = None
        for d, y in used:
            host = int(np.argmax(lv.host_dom[:, j] == d))
            gid = int(fab.index.host_path[host, col])
            spec = specs.get(names[gid]) if gid >= 0 else None
            if spec is None or spec.uplink_gbps is None:
                continue
            bound = us(spec.switches * spec.uplink_gbps * prm.net_eff)
            if bound <= 0:
                continue
            if s is None:
                s = _spans_two(m, spans, j, f"s_up{j}")
            m.Add(t_bw >= bound * (y + s - 1))


def _level_latency(p: Problem) -> list[float]:
    """Seconds-free µs per step: [inside a domain, then crossing chain level 0, 1, ...], monotone."""
    lv = p.levels
    out = [float(p.fab.index.nvlink_latency_us)]
    for j in range(len(lv.chain)):
        x = lv.tier_lat[j]
        out.append(max(out[-1], float(x)) if np.isfinite(x) else out[-1])
    return out
