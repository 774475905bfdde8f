"""The cost model (docs/placement.md has the derivation and sources).

The cost is *lexicographic*: first the modelled collective time, then the placement terms::

    cost = comm_ms + 0.001 · σ(rest / 1000)        (σ: the logistic function, 0 < σ < 1)
    rest = Σ_levels span_w[level]·domains(level) + host_w·hosts + frag_w·ΔF + break_w·pristine_broken

- ``comm_ms``: ring all-reduce of ``message_mb`` over the chosen GPUs by the collective model
  (:mod:`fabric_hpc.placement.collective`: NVLink, the NICs each host/domain brings, uplinks and
  their oversubscription, other jobs' traffic when ``contention`` is on), floored to whole µs. So
  a placement never costs less than one with a faster modelled collective; among placements
  whose collectives take the same µs, ``rest`` decides (``comm=0`` drops the collective term).
- ``ΔF``: increase of expected stranded GPUs (FGD, Weng et al., USENIX ATC'23): a host with ``r``
  free GPUs strands ``F(r) = Σ_k p_k · (r if r < k else r mod k)`` GPUs for a job of ``k`` GPUs
  drawn from the common sizes ``job_sizes``.
- ``pristine_domains_broken``: domains (NVLink/rack/leaf/...) that were entirely free before and
  are not after: a best-fit term that keeps whole blocks for large gangs.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field, model_validator

from fabric_hpc.placement.checked import CheckedModel

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.topology import Fabric


class CostWeights(CheckedModel):
    """Weights of the cost terms; the unit is "ms of all-reduce time" (see docs/placement.md). A bad
    weight is a ConfigError, also when constructed directly (``CostWeights(span=-1)``)."""

    _hint: ClassVar[str] = ("weights are finite numbers >= 0 (message_mb in (0, 2**30], span_growth >= 1); "
                            "docs/placement.md, Cost model")

    #: > 0: the modelled collective time comes first (lexicographic); 0: placement terms only.
    comm: float = Field(default=1.0, ge=0)
    #: MiB all-reduced (at most 2**30: 1 PiB, the collective model's bound).
    message_mb: float = Field(default=256.0, gt=0, le=2**30)
    #: Count the traffic of the jobs already running (max-min fair share of shared links).
    contention: bool = False
    #: Weight of one more domain at chain level 1, 2, 3…; level i gets span * span_growth**(i-1).
    span: float = Field(default=2.0, ge=0)
    span_growth: float = Field(default=2.0, ge=1)
    host: float = Field(default=0.1, ge=0)
    frag: float = Field(default=0.25, ge=0)
    pristine_break: float = Field(default=1.0, ge=0)
    job_sizes: tuple[int, ...] = (1, 2, 4, 8)
    job_size_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.4)

    @model_validator(mode="after")
    def _job_mix(self) -> CostWeights:
        if len(self.job_sizes) != len(self.job_size_probs):
            raise ValueError(f"job_sizes ({len(self.job_sizes)}) and job_size_probs "
                             f"({len(self.job_size_probs)}) must have the same length: one probability per job size")
        if any(k < 1 for k in self.job_sizes) or any(q < 0 for q in self.job_size_probs):
            raise ValueError("job_sizes must be whole numbers >= 1 and job_size_probs numbers >= 0")
        return self

    def span_weight(self, chain_level: int) -> float:
        """The weight of one more domain at ``chain_level``: 0 for hosts, else
        ``span · span_growth^(level-1)``; a ConfigError where that passes a float's range (a huge
        ``span_growth`` on a fabric of many levels: it raised a bare OverflowError)."""
        if chain_level == 0 or self.span == 0:
            return 0.0
        try:
            weight = self.span * self.span_growth ** (chain_level - 1)
        except OverflowError:
            weight = math.inf
        if not math.isfinite(weight):
            from fabric_hpc.errors import ConfigError

            raise ConfigError(f"weights: span {self.span:g} × span_growth {self.span_growth:g}"
                              f"^{chain_level - 1} (chain level {chain_level}) is past a float's range",
                              hint="use a smaller span_growth (each level up multiplies the span weight by "
                                   "it) or span; docs/placement.md, Cost model")
        return weight


def host_counts(host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(host, return_counts=True)`` for non-negative host indices, by one bincount."""
    per = np.bincount(host)
    hosts = np.flatnonzero(per)
    return hosts, per[hosts]


def stranded(free: np.ndarray, gpus: np.ndarray, w: CostWeights) -> np.ndarray:
    """F(r): expected GPUs a host with ``free`` of ``gpus`` free GPUs strands (vectorised).

    Small non-negative integer inputs are looked up in a table computed once per weights by
    :func:`_stranded_direct` itself (the same float operations per element, so identical values).
    """
    free = np.asarray(free, np.int64)
    gpus = np.asarray(gpus)
    if free.size and gpus.dtype.kind in "iu":
        hi = max(int(free.max()), int(gpus.max(initial=0)))
        if hi < _TABLE_N and int(free.min()) >= 0 and int(gpus.min(initial=0)) >= 0:
            return _stranded_table(w.job_sizes, w.job_size_probs)[gpus, free]
    return _stranded_direct(free, gpus, w.job_sizes, w.job_size_probs)


_TABLE_N = 65
_TABLES: dict[tuple, np.ndarray] = {}


def _stranded_table(sizes: tuple[int, ...], probs: tuple[float, ...]) -> np.ndarray:
    """``[gpus, free] -> F`` for 0 ≤ gpus, free < ``_TABLE_N``."""
    key = (sizes, probs)
    tab = _TABLES.get(key)
    if tab is None:
        g, r = np.meshgrid(np.arange(_TABLE_N), np.arange(_TABLE_N), indexing="ij")
        tab = _TABLES[key] = _stranded_direct(r, g, sizes, probs)
        tab.setflags(write=False)
    return tab


def _stranded_direct(free: np.ndarray, gpus: np.ndarray, sizes: tuple[int, ...],
                     probs: tuple[float, ...]) -> np.ndarray:
    free = np.asarray(free, np.int64)
    out = np.zeros(free.shape, np.float64)
    for k, p in zip(sizes, probs, strict=True):
        kk = np.maximum(np.minimum(k, np.asarray(gpus)), 1)
        out += p * np.where(free < kk, free, free % kk)
    return out


COMM_QUANTUM_MS = 1e-3  # the collective time is compared in whole µs
#: a multi-host placement with a host that has no NIC: worse than any other. Far above any real time
#: (2**30 MB, the largest ``message_mb``, takes hours, not 1e30 ms), and real times are held below a
#: quarter of it (:func:`_real_ms`), so that even the three parts of a tp/pp step cannot reach it: a
#: real collective never reads as "no network" (1e6 did, at ``message_mb`` ≥ ~4e8 on NVL72)
NO_NETWORK_MS = 1e30
REST_SCALE = 1000.0


def lex_cost(comm: float, rest: float) -> float:
    """``comm`` (ms, whole µs) first, ``rest`` as a tie-break squeezed below one µs (monotone)."""
    return comm + COMM_QUANTUM_MS * 0.5 * (1.0 + math.tanh(rest / (2 * REST_SCALE)))


def lex_key(breakdown: dict[str, float]) -> tuple[float, float]:
    """What :func:`lex_cost` orders by, without its float squeeze: (collective ms, placement terms)."""
    return round(breakdown["comm"], 6), round(breakdown["rest"], 9)


def modelled_comm_ms(problem: Problem, gpus: np.ndarray) -> float:
    """Ring all-reduce time (ms; bandwidth and latency parts each floored to whole µs) of
    ``message_mb`` on ``gpus`` by the collective model, beside the running jobs' traffic when
    ``contention`` is on; with ``tp`` or ``pp`` > 1 the slowest of the data-parallel rings
    (:func:`dp_rings_time`)."""
    if len(gpus) < 2:
        return 0.0
    background = problem.background()
    memo = _COMM.setdefault(problem.fab, {})
    key = (problem.weights.message_mb, problem.tp, problem.pp, np.asarray(gpus, np.int64).tobytes())
    if background is None and key in memo:
        return memo[key]
    bw, lat = dp_rings_time(problem.fab, gpus, problem.weights.message_mb * 2**20, problem.tp, background,
                            problem.pp)
    out = _whole_us(bw, lat)
    if background is None:
        if len(memo) > _COMM_MAX:
            memo.clear()
        memo[key] = out
    return out


def _whole_us(bw: float, lat: float) -> float:
    """ms of a collective's bandwidth and latency parts (s), each floored to whole µs;
    :data:`NO_NETWORK_MS` when it cannot run (a host without a NIC in a multi-host placement)."""
    if not math.isfinite(bw):
        return NO_NETWORK_MS
    return _real_ms((math.floor(bw * 1e6 + 1e-6) + math.floor(lat * 1e6 + 1e-6)) * COMM_QUANTUM_MS)


def _real_ms(ms: float) -> float:
    """A real (finite) time, held below a quarter of :data:`NO_NETWORK_MS` (only absurd link rates
    get there), so that it never reads as the sentinel."""
    return min(ms, NO_NETWORK_MS / 4)


def dp_rings_time(fab: Fabric, gpus: np.ndarray, size: float, tp: int,
                  background: list[np.ndarray] | None, pp: int = 1) -> tuple[float, float]:
    """(bandwidth s, latency s) of the data-parallel all-reduce of ``size`` bytes on ``gpus``. With
    tensor-parallel groups of ``tp`` (consecutive GPUs in ring order, each inside an NVLink domain)
    every TP rank holds ``1/tp`` of the parameters and reduces them in a ring of its own over one GPU
    of each group: ``tp`` rings of ``size/tp`` at once. With ``pp`` pipeline stages (consecutive
    blocks of the GPUs in ring order) each stage reduces its ``1/pp`` of the parameters over its own
    GPUs: ``tp·pp`` rings of ``size/(tp·pp)``. The rings share the fabric max-min fairly; the
    slowest sets the time. ``tp = pp = 1``: one ring over all GPUs."""
    from fabric_hpc.placement.collective import collective_time
    from fabric_hpc.placement.parallel import concurrent_rings, dp_rings

    if tp <= 1 and pp <= 1:
        t = collective_time(fab, gpus, size, kind="allreduce", algo="ring", background=background)
        return t.bandwidth_s, t.latency_s
    rings = dp_rings(fab, np.unique(np.asarray(gpus, np.int64)), tp, pp)
    return max(concurrent_rings(fab, rings, size / (tp * pp), background), key=sum, default=(0.0, 0.0))


#: modelled_comm_ms without contention, per fabric and (message size, sorted GPU indices)
_COMM: weakref.WeakKeyDictionary[Fabric, dict[tuple, float]] = weakref.WeakKeyDictionary()
_COMM_MAX = 100_000


@dataclass(frozen=True)
class StepReference:
    """A tp/pp request's constants for :func:`step_parts` (they depend on the fabric and the request's
    GPU count, ``tp``, ``pp`` and ``message_mb``, never on the state or the placement)."""

    s_tp: float  # default shares of the communication (:func:`~fabric_hpc.placement.step.default_shares`)
    s_pp: float
    dp_ms: float  # the data-parallel all-reduce on the compact placement (the first n GPUs), alone, whole µs
    tp_s: float  # the TP groups' all-reduce on the compact placement, alone (s)
    send_s: float  # e_ref (s): one stage-to-stage pair through its own NICs (step.send_reference)
    unit_ms: float  # ms of the step's communication per unit of the simulator's comm(P)


def step_reference(fab: Fabric, n: int, tp: int, pp: int, message_mb: float) -> StepReference:
    """The :class:`StepReference` of a request of ``n`` GPUs (remembered per fabric). ``unit_ms`` is
    ``t_dp(compact) / s_dp``, so that :func:`step_parts`' data-parallel part is the all-reduce's own
    time; where the job has no data-parallel all-reduce (``n = tp·pp``: one-GPU rings), ``e_ref / s_pp``
    (the sends' part is then their own time) or else ``t_tp(compact) / s_tp``."""
    from fabric_hpc.placement.step import default_shares, reference_times

    memo = _REF.setdefault(fab, {})
    key = (n, tp, pp, message_mb)
    hit = memo.get(key)
    if hit is None:
        s_tp, s_pp = default_shares(tp > 1, pp > 1)
        s_dp = 1.0 - s_tp - s_pp
        dp_ms = _whole_us(*dp_rings_time(fab, np.arange(n), message_mb * 2**20, tp, None, pp))
        tp_s, send_s, _ = reference_times(fab, n, tp, pp)
        if 0 < dp_ms < NO_NETWORK_MS:
            unit = dp_ms / s_dp
        elif s_pp > 0 and 0 < send_s < math.inf:
            unit = send_s * 1e3 / s_pp
        elif s_tp > 0 and 0 < tp_s < math.inf:
            unit = tp_s * 1e3 / s_tp
        else:
            unit = 0.0
        hit = memo[key] = StepReference(s_tp, s_pp, dp_ms, tp_s, send_s, unit)
    return hit


def step_parts(problem: Problem, gpus: np.ndarray, dp_ms: float) -> dict[str, float]:
    """A tp/pp request's communication per step on ``gpus`` in the data-parallel all-reduce's
    milliseconds (docs/placement.md, "Cost model"); empty for a request without ``tp`` or ``pp``::

        comm_dp = t_dp(P)                         (``dp_ms``: :func:`modelled_comm_ms`)
        comm_tp = unit · s_tp · r_tp(P)           (``unit``: :attr:`StepReference.unit_ms`)
        comm_pp = unit · s_pp · e(P) / e_ref
        comm_ms = comm_dp + comm_tp + comm_pp = unit · comm(P)

    ``comm(P)`` is the simulator's (:mod:`fabric_hpc.placement.step`) with this cost's data-parallel
    time, and ``unit`` is a constant of the request, so ``comm_ms`` orders placements as ``comm(P)``
    does. The TP and send parts are each floored to whole µs; one that cannot run (a host without a
    NIC) is :data:`NO_NETWORK_MS`, as the data-parallel part is. With ``contention`` on, the TP groups
    that leave an NVLink domain and the sends that do share the fabric with the running jobs' traffic
    (``problem.background()``, the loads the data-parallel part sees;
    :func:`~fabric_hpc.placement.step.group_times`)."""
    tp, pp = problem.tp, problem.pp
    if tp <= 1 and pp <= 1:
        return {}
    from fabric_hpc.placement.step import group_times, ratio

    g = np.asarray(gpus, np.int64)
    ref = step_reference(problem.fab, len(g), tp, pp, problem.weights.message_mb)
    background = problem.background()
    memo = _GROUPS.setdefault(problem.fab, {})
    key = (tp, pp, g.tobytes())
    times = memo.get(key) if not background else None
    if times is None:
        times = group_times(problem.fab, g, tp, pp, background=background)
        if not background:
            if len(memo) > _COMM_MAX:
                memo.clear()
            memo[key] = times
    parts = ((ref.s_tp, times[0], ref.tp_s), (ref.s_pp, times[1], ref.send_s))
    comm_tp, comm_pp = (_floor_ms(ref.unit_ms * share * ratio(t, ideal)) if math.isfinite(t)
                        else NO_NETWORK_MS for share, t, ideal in parts)
    return {"comm_dp": dp_ms, "comm_tp": comm_tp, "comm_pp": comm_pp}


def least_tp_part(problem: Problem, n: int) -> float:
    """A lower bound of :func:`step_parts`' ``comm_tp`` over every placement of ``n`` GPUs for
    ``problem``'s request on its eligible hosts (:func:`~fabric_hpc.placement.step.tp_floor`); 0.0
    without ``tp``."""
    if problem.tp <= 1:
        return 0.0
    from fabric_hpc.placement.step import ratio, tp_floor

    ref = step_reference(problem.fab, n, problem.tp, problem.pp, problem.weights.message_mb)
    floor = tp_floor(problem.fab, np.flatnonzero(problem.host_ok), problem.tp)
    return _floor_ms(ref.unit_ms * ref.s_tp * ratio(floor, ref.tp_s)) if math.isfinite(floor) else 0.0


def _floor_ms(ms: float) -> float:
    return _real_ms(math.floor(ms * 1e3 + 1e-6) * COMM_QUANTUM_MS)


#: step_reference per fabric and (n, tp, pp, message_mb)
_REF: weakref.WeakKeyDictionary[Fabric, dict[tuple, StepReference]] = weakref.WeakKeyDictionary()
#: step_parts' (TP groups' time, sends' time) per fabric and (tp, pp, sorted GPU indices)
_GROUPS: weakref.WeakKeyDictionary[Fabric, dict[tuple, tuple]] = weakref.WeakKeyDictionary()


def evaluate(problem: Problem, gpus: np.ndarray) -> tuple[float, dict[str, float], dict[str, int]]:
    """(total cost, breakdown by term, domains spanned per chain level) of a set of GPU indices."""
    w = problem.weights
    lv = problem.levels
    gpus = np.asarray(gpus, np.int64)
    idx = problem.fab.index
    hosts, counts = host_counts(idx.gpu_host[gpus])
    t = modelled_comm_ms(problem, gpus)
    parts = step_parts(problem, gpus, t)
    if parts:  # tp / pp: the step's communication in the data-parallel all-reduce's ms
        t = round(sum(parts.values()) / COMM_QUANTUM_MS) * COMM_QUANTUM_MS
    # distinct domains per chain level (a set per column of the few hosts' domain ids)
    doms = [list(set(col)) for col in lv.host_dom[hosts].T.tolist()]
    spans = {lv.chain[j]: len(doms[j]) for j in range(len(lv.chain))}
    span_cost = sum(w.span_weight(j) * spans[name] for j, name in enumerate(lv.chain))
    frag = _frag_increase(problem.free_all[hosts], counts, lv.host_gpus[hosts], w, problem.free_mat.shape[1])
    pristine = problem.pristine
    broken = sum(sum(1 for d in doms[j] if pristine[j][d]) for j in range(1, len(lv.chain)))  # the few domains
    breakdown = {"comm_ms": t, **parts, "comm": t if w.comm > 0 else 0.0, "span": span_cost,
                 "hosts": w.host * len(hosts), "frag_gpus": frag, "frag": w.frag * frag,
                 "pristine_broken": float(broken), "pristine": w.pristine_break * broken}
    rest = breakdown["rest"] = span_cost + breakdown["hosts"] + breakdown["frag"] + breakdown["pristine"]
    total = lex_cost(breakdown["comm"], rest) if w.comm > 0 else rest
    return float(total), breakdown, spans


def _frag_increase(free: np.ndarray, counts: np.ndarray, gpus: np.ndarray, w: CostWeights, widest: int) -> float:
    """``Σ F(free - counts) - F(free)`` over hosts with ``gpus`` GPUs each (``widest``: the most any
    host of the fabric has): the two :func:`stranded` calls in one table lookup each when every
    index is inside the table (the values :func:`stranded` returns there), else those calls."""
    after = free - counts
    if widest < _TABLE_N and after.size and int(after.min()) >= 0:  # 0 <= after <= free <= gpus < table
        tab = _stranded_table(w.job_sizes, w.job_size_probs)
        return float((tab[gpus, after] - tab[gpus, free]).sum())
    return float((stranded(after, gpus, w) - stranded(free, gpus, w)).sum())


def fragmentation(fab_free: np.ndarray, problem: Problem) -> float:
    """Cluster fragmentation: expected stranded GPUs / free GPUs (0 = none), FGD-style."""
    lv = problem.levels
    per_host = np.bincount(problem.fab.index.gpu_host, weights=fab_free.astype(np.float64),
                           minlength=len(lv.host_gpus)).astype(np.int64)
    total = per_host.sum()
    return float(stranded(per_host, lv.host_gpus, problem.weights).sum() / total) if total else 0.0
