"""CP-SAT's linearisation of the collective model (``cost.modelled_comm_ms``), in whole µs.

``T = T_bw + T_lat`` with every term a lower bound of the model's ring all-reduce time, so the
CP-SAT objective ``LEX·T + rest`` never exceeds the exact lexicographic cost of a placement, and a
placement whose exact collective time equals its ``T`` at the optimum is proven optimal:

- one NVLink domain (``s = 0``): ``T_bw = B / (nvl · η_nvl)`` (exact), ``B = 2(n-1)/n · S``;
- several (``s = 1``): ``T_bw ≥ B / (min(mn, 32, M) · nic · η_net)`` where ``mn`` is the fewest GPUs a
  used NVLink domain gets (a domain cannot bring more NICs than GPUs: the channel bound) and ``M``
  the most NICs any candidate NVLink domain has (nor more NICs than it has: one NIC for 8 GPUs
  gives one channel), and
  ``T_bw ≥ (kx-1)/kx · B / (nvl · η_nvl)`` with ``kx`` the most GPUs a domain gets (NVLink share);
- a used domain ``d`` of a network level spanned twice or more: the ring leaves it once, so
  ``T_bw ≥ B / (its uplinks · η_net)`` (oversubscribed ToRs bind here; other jobs only slow it);
- ``T_lat = 2(n-1) · L(top level crossed)``: the fabric's rail-matched probe latency per level.

On a mixed cluster (candidate hosts whose NVLink / PCIe or NIC rates or NIC counts differ) the
NVLink domains are grouped by those rates, and each class's terms use its own (the fastest of its
hosts) and hold where one of its domains is used: ``nvl``, ``nic`` and ``M`` above are then the
class's. With one fabric-wide rate a PCIe host's ring looked as fast as an NVLink host's, and the
placement terms (best fit) chose the PCIe host at 14× the time.

With ``pp`` pipeline stages each of the ``tp·pp`` data-parallel rings lies in one stage of ``ns``
GPUs, consecutive in ring order, which lists every domain's GPUs together (the top level first).
With a level's domain counts in ring order and prefix sums ``P = ns·q + ρ``, a stage crosses the
boundary after a domain exactly when ``ρ > 0``, and the stage holding that boundary has at most
``min(ρ, ns-ρ)`` GPUs on its smaller side, so at most that many in one NVLink domain. CP-SAT reads
this where its variables give the level's counts (``β ≥ [ρ > 0]``: minimising T sets it exactly);
a level no stage fits in one domain of (``ns`` > the most GPUs any such domain has) is crossed by
every stage. The time is that of the slowest stage, so each bandwidth term is paired with the
latency of a stage that pays it (a stage crossing level ``j`` crosses every level below it): the
stage crossing the highest level (its latency, and the channel bound of ``ns/2`` GPUs); the stage
at an unaligned boundary of level ``j`` (the latency up to ``j``, its smaller side's NICs, and the
uplinks of the domains beside that boundary). The NVLink-share term (``kx``) is dropped for
``pp`` > 1 (a domain's GPUs may be split between stages).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.collective import CollectiveParams, fabric_net
from fabric_hpc.placement.levels import fabric_levels, largest_domain_gpus

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


@dataclass(frozen=True)
class _Scale:
    """One problem's constants: a data-parallel ring's bytes per rank, as whole µs at a bandwidth."""

    per_rank: float
    nvl: float  # GB/s of the fastest candidate GPU's NVLink, times its efficiency
    nic: float  # GB/s of the fastest candidate NIC, times the network's efficiency
    channels: int  # NCCL's most channels, capped by the most NICs a candidate NVLink domain has
    tp: int
    lat: list[int]  # µs of the ring's steps: inside a domain, then crossing chain level 0, 1, ...
    max_channels: int = 32  # NCCL's most channels

    def us(self, gbps: float, share: float = 1.0) -> int:
        return int(math.floor(self.per_rank * share / (gbps * 1e9) * 1e6 + 1e-6)) if gbps > 0 else 0

    def ring(self, k: int) -> int:
        """GPUs of one data-parallel ring among a domain's ``k`` (the fewest any ring gets)."""
        return max(k // self.tp, 1)

    def nic_us(self, k: int, rates: tuple[float, float, int] | None = None) -> int:
        """A ring through the NICs of ``k`` GPUs of one NVLink domain (NCCL's channel bound); ``rates``:
        that domain's class (:func:`_rates`), else the fastest candidate's."""
        if rates is None:
            return self.us(self.nic * min(self.ring(k), self.channels))
        return self.us(rates[1] * min(self.ring(k), self.max_channels, rates[2]))


def comm_lower_bound(m, p: Problem, items, c, u, spans: dict, ys: dict):
    """A linear expression of T (µs) for the collective of ``p`` on CP-SAT items (0: none). With
    tensor-parallel groups of ``K = p.tp`` and ``P = p.pp`` pipeline stages the bound is of one
    data-parallel ring (``n/(K·P)`` ranks, ``1/(K·P)`` of the bytes, at most ``k/K`` of a domain's
    ``k`` GPUs): the slowest of the K·P rings is no faster (stages: the module doc)."""
    n = p.units * (p.gpn or 1) // (p.tp * p.pp)
    if n < 2 or p.weights.comm <= 0:
        return 0
    k = _scale(p, n)
    crosses = _stages_cross(p)
    t_bw, bw_hi = _bandwidth(m, p, items, c, u, spans, ys, k, crosses)
    terms = [k.lat[0]]
    for j in range(len(p.levels.chain)):
        delta = k.lat[j + 1] - k.lat[j]
        if delta > 0 and crosses[j]:
            terms.append(delta * _spans_two(m, spans, j, f"s_lat{j}"))
    if p.pp == 1:
        return t_bw + sum(terms)
    return _staged(m, p, items, c, u, ys, k, crosses, (t_bw, bw_hi), sum(terms))


def _scale(p: Problem, n: int) -> _Scale:
    prm = CollectiveParams()
    fab = p.fab
    cand_gpus = np.flatnonzero(np.isin(fab.index.gpu_host, p.cand))
    per_rank = 2.0 * (n - 1) / n * p.weights.message_mb * 2**20 / (p.tp * p.pp)
    steps = 2 * (n - 1)
    net = fabric_net(fab)
    channels = min(prm.max_channels, _most_nics(net.ring_dom[cand_gpus], net.nic_key[cand_gpus]))
    return _Scale(per_rank, float(net.cap[cand_gpus].max()) * prm.nvlink_eff,
                  float(fab.index.gpu_nic_gbps[cand_gpus].max()) * prm.net_eff, channels, p.tp,
                  [int(math.floor(steps * x + 1e-6)) for x in _level_latency(p)],  # floors telescope exactly
                  prm.max_channels)


def _most_nics(nvl: np.ndarray, nic: np.ndarray) -> int:
    """The most distinct NICs any NVLink domain has among the given GPUs (at least 1: a domain
    without one cannot take part in a multi-domain ring, which the bound then need not cover)."""
    has = nic >= 0
    if not has.any():
        return 1
    pairs = np.unique(np.stack([nvl[has], nic[has]]), axis=1)
    return int(np.bincount(np.unique(pairs[0], return_inverse=True)[1]).max())


def _bandwidth(m, p: Problem, items, c, u, spans: dict, ys: dict, k: _Scale, crosses: list[bool]):
    """T_bw: the terms every stage pays (all of them with one stage; the module doc). On a fabric
    whose candidate hosts differ in NVLink or NIC rates (a mixed cluster) each class of NVLink
    domains gets its own terms, enforced where a domain of it is used (:func:`_rate_classes`)."""
    lv = p.levels
    j_nvl = lv.alias.get("nvlink", 0)
    doms = _domain_counts(p, items, c, u, ys, j_nvl)
    classes = _rate_classes(p, items, u, doms, j_nvl, k)
    ups = _uplink_terms(p, items, u, ys, k, crosses)
    # above every term T_bw is held to (each class's NVLink and one-NIC ring times, every uplink
    # bound), so the variable's domain never cuts a feasible placement (a leaf's uplinks slower than
    # one NIC made the empty fabric "infeasible")
    big = max([k.us(r[0]) for r, _, _ in classes] + [k.nic_us(1, r) for r, _, _ in classes]
              + [b for _, _, _, b in ups]) + 1
    t_bw = m.NewIntVar(0, big, "t_bw")
    s_nvl = _spans_two(m, spans, j_nvl, "s_nvl")
    # GPUs of the gang in one NVLink domain: at most the largest domain's (the element tables below
    # have hi + 1 entries; the gang's size made them thousands long on many NVL72 racks, minutes of
    # CP-SAT wall time past every limit)
    hi = max(min(int(p.units * (p.gpn or 1)), largest_domain_gpus(lv, j_nvl)), 1)
    for ci, (rates, entries, maxg) in enumerate(classes):
        when = [s_nvl]
        if len(classes) > 1:  # this class's terms hold where one of its domains is used
            used = m.NewBoolVar(f"cls{ci}")
            for _, y, _ in entries:
                m.Add(used >= y)
            when.append(used)
        m.Add(t_bw >= k.us(rates[0])).OnlyEnforceIf([s_nvl.Not(), *when[1:]])
        if maxg is not None:  # NVLink domains below the items (hosts inside domain items, total-GPU mode)
            if crosses[j_nvl]:
                m.Add(t_bw >= k.nic_us(maxg, rates)).OnlyEnforceIf(when)
            continue
        mn, kx = m.NewIntVar(1, hi, f"mn{ci}"), m.NewIntVar(1, hi, f"kx{ci}")
        for _, y, g in entries:
            m.Add(mn <= g + hi * (1 - y))
            m.Add(kx >= g - hi * (1 - y))
        t_nic = m.NewIntVar(0, big, f"t_nic{ci}")
        m.AddElement(mn, [big] + [k.nic_us(x, rates) for x in range(1, hi + 1)], t_nic)
        t_nvl = m.NewIntVar(0, big, f"t_nvl{ci}")
        m.AddElement(kx, [0] + [k.us(rates[0], (k.ring(x) - 1) / k.ring(x)) for x in range(1, hi + 1)], t_nvl)
        if crosses[j_nvl]:
            m.Add(t_bw >= t_nic).OnlyEnforceIf(when)
        if p.pp == 1:
            m.Add(t_bw >= t_nvl).OnlyEnforceIf(when)
    _uplinks(m, spans, t_bw, ups)
    return t_bw, big


def _rate_classes(p: Problem, items, u, doms: list, j_nvl: int, k: _Scale) -> list[tuple]:
    """(rates, entries, most GPUs of a host or None) per class of NVLink domains: ``rates`` =
    (NVLink GB/s, NIC GB/s, NICs), each times its efficiency, the fastest of the class (so every
    term stays a lower bound); ``entries`` = (domain, used, GPUs) of :func:`_domain_counts`, or
    (None, item used, None) per item where the items do not resolve the NVLink domains (then with
    the most GPUs a host has). One class, with the fastest candidate's rates, where every candidate
    host has the same rates (the model of a homogeneous fabric is unchanged)."""
    resolved = bool(doms)
    entries = doms if resolved else [(None, ui, None) for ui in u]
    maxg = None if resolved else int(p.levels.host_gpus.max(initial=1))
    rows = host_rates(p.fab)
    cand = rows[p.cand]
    if not len(cand) or (cand == cand[0]).all():
        return [((k.nvl, k.nic, k.channels), entries, maxg)]
    if resolved and doms[0][0] is not None:  # one row per domain of the NVLink level
        keys = [_dom_rates(p.fab, j_nvl)[d] for d, _, _ in doms]
        most = [None] * len(doms)
    else:  # one per item: the fastest of its hosts
        keys = [rows[hs].max(axis=0) for hs in items.members]
        most = [None if resolved else int(p.levels.host_gpus[hs].max(initial=1)) for hs in items.members]
    out: dict[tuple, tuple] = {}
    for key, e, g in zip(keys, entries, most, strict=True):
        rates = (float(key[0]), float(key[1]), int(key[2]))
        rates, found, hi = out.get(rates, (rates, [], g))
        out[rates] = (rates, [*found, e], None if g is None else max(hi, g))
    return list(out.values())


def host_rates(fab) -> np.ndarray:
    """[host, 3]: its fastest GPU's NVLink (PCIe on a PCIe-only host) GB/s and its fastest NIC's,
    each times its efficiency, and its NICs (per fabric, read-only)."""
    hit = _RATES.get(fab)
    if hit is None:
        prm, net, idx = CollectiveParams(), fabric_net(fab), fab.index
        hit = np.zeros((len(fab.hosts), 3))
        np.maximum.at(hit[:, 0], idx.gpu_host, net.cap[: len(fab.gpus)] * prm.nvlink_eff)
        np.maximum.at(hit[:, 1], idx.gpu_host, idx.gpu_nic_gbps.astype(np.float64) * prm.net_eff)
        hit[:, 2] = [fab.host_type(h).nics for h in fab.hosts]
        hit.setflags(write=False)
        _RATES[fab] = hit
    return hit


def _dom_rates(fab, j: int) -> np.ndarray:
    """[domain, 3] of chain level ``j``: the fastest rates of its hosts (:func:`host_rates`), their
    NICs summed (per fabric and level, read-only)."""
    memo = _DOM_RATES.setdefault(fab, {})
    hit = memo.get(j)
    if hit is None:
        rows, dom = host_rates(fab), fabric_levels(fab).host_dom[:, j]
        hit = np.zeros((int(dom.max(initial=-1)) + 1, 3))
        np.maximum.at(hit[:, 0], dom, rows[:, 0])
        np.maximum.at(hit[:, 1], dom, rows[:, 1])
        hit[:, 2] = np.bincount(dom, weights=rows[:, 2], minlength=len(hit))
        hit.setflags(write=False)
        memo[j] = hit
    return hit


_RATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DOM_RATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _staged(m, p: Problem, items, c, u, ys: dict, k: _Scale, crosses: list[bool], bw: tuple, lat_all):
    """T of the slowest pipeline stage where CP-SAT's domain counts say which stages cross which
    levels (the module doc); ``t_bw + lat_all`` (the terms every stage pays) where they do not.
    ``bw`` = (T_bw, its upper bound)."""
    t_bw, bw_hi = bw
    lv = p.levels
    ns = p.units * (p.gpn or 1) // p.pp
    dyn: dict[int, _Crossing] = {}
    for j in range(len(lv.chain)):
        doms = [] if crosses[j] else _domain_counts(p, items, c, u, ys, j)
        if len(doms) > 1 or (doms and doms[0][0] is None):  # hosts inside one domain item may cross too
            dyn[j] = _crossing(m, p, doms, ns, j)
    if not dyn:
        return t_bw + lat_all
    upto, acc = {}, 0
    for j in sorted(dyn):  # a stage crossing level j crosses every level below it
        acc += k.lat[j + 1] - k.lat[j]
        upto[j] = acc
    ups = {(j, d): _uplink_us(p, j, d, k) for j, cr in dyn.items() for d, *_ in cr.touch if d is not None}
    big = max([bw_hi, k.us(k.nvl), k.nic_us(1), *ups.values()]) + k.lat[-1] + 1
    t = m.NewIntVar(0, big, "t_stage")
    m.Add(t >= t_bw + lat_all)
    j_nvl = lv.alias.get("nvlink", 0)
    half = k.nic_us(max(ns // 2, 1))  # a crossing stage has at most ns/2 GPUs on its smallest side
    gen = half * dyn[j_nvl].x if j_nvl in dyn else (half if crosses[j_nvl] else 0)
    m.Add(t >= lat_all + sum((k.lat[j + 1] - k.lat[j]) * cr.x for j, cr in dyn.items()) + gen)
    for j, cr in dyn.items():  # a crossing stage leaves a domain it touches through the uplinks
        for d, y, before, after in cr.touch:
            up = ups.get((j, d), 0)
            for side in (before, after):
                if up > 0 and side is not None:
                    m.Add(t >= lat_all + (up + upto[j]) * (side + y - 1))
    if j_nvl in dyn:
        cr = dyn[j_nvl]
        m.Add(t >= k.us(k.nvl) + lat_all).OnlyEnforceIf(cr.x.Not())  # every ring inside one domain
        mp = m.NewIntVar(1, max(ns // 2, 1), "mp")  # a crossing stage's fewest GPUs in one domain
        for caps, b in cr.caps:
            for cap in caps:
                m.Add(mp <= cap + ns * (1 - b))
        t_mp = m.NewIntVar(0, big, "t_mp")
        m.AddElement(mp, [half] + [k.nic_us(x) for x in range(1, max(ns // 2, 1) + 1)], t_mp)
        m.Add(t >= lat_all + upto[j_nvl] + t_mp).OnlyEnforceIf(cr.x)
    return t


@dataclass
class _Crossing:
    """Where stages cross one level's domains: ``x`` = some stage does; ``touch`` = (domain, used,
    boolean before, boolean after) per domain: the boundary before / after it is inside a stage;
    ``caps`` = (upper bounds, boolean): while the boolean holds, some crossing stage has at most each
    bound's GPUs in one of its domains."""

    x: object
    touch: list[tuple] = field(default_factory=list)
    caps: list[tuple] = field(default_factory=list)


def _crossing(m, p: Problem, doms: list, ns: int, j: int) -> _Crossing:
    """Domains in ring order with prefix sums ``P = ns·q + ρ`` at each boundary: ``β = [ρ > 0]``
    (``ρ ≤ (ns-1)·β``, ``x ≥ β``; minimising T sets them exactly), and the stage holding that
    boundary has at most ``min(ρ, ns-ρ)`` GPUs on its smaller side of it. Hosts inside domain items
    (nodes mode: ids unknown, each ``gpn`` GPUs): a host whose count is not a multiple of ``ns``."""
    hi = p.units * (p.gpn or 1)
    cr = _Crossing(m.NewBoolVar(f"x{j}"))
    if doms[0][0] is None:
        for i, (_, y, g) in enumerate(doms):
            r = m.NewIntVar(0, ns - 1, f"r{j}_{i}")
            m.Add(g == ns * m.NewIntVar(0, hi // ns, f"q{j}_{i}") + r)
            b = _positive(m, r, ns, cr.x, f"b{j}_{i}")
            cr.caps.append(([g], b))
        return cr
    order = sorted(range(len(doms)), key=lambda i: _ring_key(p, j, doms[i][0]))
    prefix, betas = 0, []
    for pos, i in enumerate(order[:-1]):
        nxt = m.NewIntVar(0, hi, f"P{j}_{pos}")
        m.Add(nxt == prefix + doms[i][2])
        prefix = nxt
        rho = m.NewIntVar(0, ns - 1, f"rho{j}_{pos}")
        m.Add(prefix == ns * m.NewIntVar(0, hi // ns, f"Q{j}_{pos}") + rho)
        beta = _positive(m, rho, ns, cr.x, f"beta{j}_{pos}")
        cr.caps.append(([rho, ns - rho], beta))
        betas.append(beta)
    for pos, i in enumerate(order):
        d, y, _ = doms[i]
        cr.touch.append((d, y, betas[pos - 1] if pos else None, betas[pos] if pos < len(betas) else None))
    return cr


def _positive(m, r, ns: int, x, name: str):
    """A boolean at least [r > 0] (0 ≤ r < ns), and ``x`` at least it."""
    b = m.NewBoolVar(name)
    m.Add(r <= (ns - 1) * b)
    m.Add(x >= b)
    return b


def _ring_key(p: Problem, j: int, d: int) -> tuple[int, ...]:
    """Where domain ``d`` of chain level ``j`` comes in ring order (the top level first)."""
    host = int(np.argmax(p.levels.host_dom[:, j] == d))
    return tuple(int(v) for v in p.levels.host_dom[host, j:][::-1])


def _spans_two(m, spans: dict, j: int, name: str):
    """A boolean equal to [domains spanned at chain level j ≥ 2] (False when j is not modelled)."""
    s = m.NewBoolVar(name)
    if j not in spans or isinstance(spans[j], int):
        m.Add(s == int(j in spans and spans[j] >= 2))
        return s
    m.Add(spans[j] >= 2).OnlyEnforceIf(s)
    m.Add(spans[j] <= 1).OnlyEnforceIf(s.Not())
    return s


def _domain_counts(p: Problem, items, c, u, ys: dict, j: int) -> list[tuple]:
    """(domain id or None, used boolean, GPU count expression) per domain of chain level ``j``, where
    the items resolve them ([] where they do not)."""
    g = p.gpn or 1
    if j == items.level:
        return [(int(items.dom[i, j]), u[i], c[i] * g) for i in range(len(c))]
    if j > items.level and j in ys:
        doms = items.dom[:, j]
        return [(int(d), y, sum(c[i] for i in np.flatnonzero(doms == d)) * g) for d, y in ys[j].items()]
    if p.nodes_mode:  # hosts inside domain items: every host of a nodes request gets gpn GPUs
        return [(None, ui, g * ui) for ui in u]
    return []


def _stages_cross(p: Problem) -> list[bool]:
    """Per chain level: whether every pipeline stage's rings must cross its domains (always, for
    ``pp`` = 1: the one stage is the job, and each term is enforced only when the job spans)."""
    lv = p.levels
    if p.pp == 1:
        return [True] * len(lv.chain)
    stage = p.units * (p.gpn or 1) // p.pp
    return [stage > largest_domain_gpus(lv, j) for j in range(len(lv.chain))]


def _uplink_terms(p: Problem, items, u, ys: dict, k: _Scale, crosses: list[bool]) -> list[tuple]:
    """(level, domain, used boolean, µs of a ring leaving it through its uplinks) per modelled domain
    of a network level with an uplink figure (:func:`_uplink_us` > 0)."""
    lv, out = p.levels, []
    for j, name in enumerate(lv.chain):
        if name not in p.fab.levels or not crosses[j]:
            continue
        if j == items.level:  # the items are this level's domains
            used = [(int(items.dom[i, j]), u[i]) for i in range(len(u))]
        elif j in ys:
            used = list(ys[j].items())
        else:
            continue
        out.extend((j, d, y, b) for d, y in used if (b := _uplink_us(p, j, d, k)) > 0)
    return out


def _uplinks(m, spans: dict, t_bw, ups: list[tuple]) -> None:
    """``T_bw ≥ bound`` where a domain of :func:`_uplink_terms` is used and its level spanned twice."""
    s: dict[int, object] = {}
    for j, _, y, bound in ups:
        if j not in s:
            s[j] = _spans_two(m, spans, j, f"s_up{j}")
        m.Add(t_bw >= bound * (y + s[j] - 1))


def _uplink_us(p: Problem, j: int, d: int, k: _Scale) -> int:
    """A ring leaving domain ``d`` of chain level ``j`` through all its uplinks (0: no uplink figure)."""
    fab, lv = p.fab, p.levels
    name = lv.chain[j]
    if name not in fab.levels:
        return 0
    spec = _group_specs(fab).get(_group_of(p, j, d))
    if spec is None or spec.uplink_gbps is None:
        return 0
    return k.us(spec.switches * spec.uplink_gbps * CollectiveParams().net_eff)


def _group_specs(fab) -> dict:
    return {gr.name: gr for gr in fab.spec.network.groups} if fab.spec.network else {}


def _group_of(p: Problem, j: int, d: int) -> str | None:
    fab, lv = p.fab, p.levels
    host = int(np.argmax(lv.host_dom[:, j] == d))
    gid = int(fab.index.host_path[host, fab.levels.index(lv.chain[j])])
    return list(fab.groups)[gid] if gid >= 0 else None


def _level_latency(p: Problem) -> list[float]:
    """Seconds-free µs per step: [inside a domain, then crossing chain level 0, 1, ...], monotone."""
    lv = p.levels
    out = [float(p.fab.index.nvlink_latency_us)]
    for j in range(len(lv.chain)):
        x = lv.tier_lat[j]
        out.append(max(out[-1], float(x)) if np.isfinite(x) else out[-1])
    return out
