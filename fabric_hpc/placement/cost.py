"""The cost model (docs/placement.md has the derivation and sources).

``cost = comm·T_allreduce + Σ_levels span_w[level]·domains(level) + host_w·hosts
        + frag_w·ΔF + break_w·pristine_domains_broken``

- ``T_allreduce`` (ms): ring all-reduce of ``message_mb`` over the chosen GPUs, ring ordered by the
  topology (hosts sorted by their domain path, inter-host edges rail-matched like NCCL's rings):
  ``2(n-1)/n · S / B_min + 2(n-1) · α_max`` with ``B_min``/``α_max`` the bottleneck bandwidth and
  worst latency over the ring's edges (``fab.index.pair``, vectorised). Patarasuk & Yuan 2009,
  NCCL's performance docs (bus bandwidth = algbw · 2(n-1)/n).
- ``ΔF``: increase of expected stranded GPUs (FGD, Weng et al., USENIX ATC'23): a host with ``r``
  free GPUs strands ``F(r) = Σ_k p_k · (r if r < k else r mod k)`` GPUs for a job of ``k`` GPUs
  drawn from the common sizes ``job_sizes``.
- ``pristine_domains_broken``: domains (NVLink/rack/leaf/...) that were entirely free before and
  are not after: a best-fit term that keeps whole blocks for large gangs.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from fabric_hpc.validation import StrictModel

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem
    from fabric_hpc.topology import Fabric


class CostWeights(StrictModel):
    """Weights of the cost terms; the unit is "ms of all-reduce time" (see docs/placement.md)."""

    comm: float = Field(default=1.0, ge=0)
    message_mb: float = Field(default=256.0, gt=0)
    #: Weight of one more domain at chain level 1, 2, 3…; level i gets span * span_growth**(i-1).
    span: float = Field(default=2.0, ge=0)
    span_growth: float = Field(default=2.0, ge=1)
    host: float = Field(default=0.1, ge=0)
    frag: float = Field(default=0.25, ge=0)
    pristine_break: float = Field(default=1.0, ge=0)
    job_sizes: tuple[int, ...] = (1, 2, 4, 8)
    job_size_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.4)

    def span_weight(self, chain_level: int) -> float:
        return 0.0 if chain_level == 0 else self.span * self.span_growth ** (chain_level - 1)


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


def comm_ms(n: int, bw_gbps: float, lat_us: float, w: CostWeights) -> float:
    if n <= 1 or not np.isfinite(bw_gbps) or bw_gbps <= 0:
        return 0.0
    size = w.message_mb * 2**20
    return (2 * (n - 1) / n * size / (bw_gbps * 1e9) + 2 * (n - 1) * lat_us * 1e-6) * 1e3


def tier_times(problem: Problem, n: int) -> np.ndarray:
    """Comm time (ms) when the ring's top edge crosses chain level j; [-1] = one host.

    Bandwidth is the minimum, latency the maximum, over this tier and all below (monotone
    envelope), which is exact on tree fabrics where both worsen going up.
    """
    lv = problem.levels
    order = [len(lv.tier_bw) - 1, *range(len(lv.tier_bw) - 1)]  # intra-host first
    out = np.zeros(len(lv.tier_bw))
    bw, lat = np.inf, 0.0
    for j in order:
        if np.isfinite(lv.tier_bw[j]):
            bw, lat = min(bw, lv.tier_bw[j]), max(lat, lv.tier_lat[j])
        out[j] = comm_ms(n, bw, lat, problem.weights)
    return out


def ring_edges(problem: Problem, gpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring edges (a, b) over ``gpus``: topology order, rail-matched between hosts."""
    idx = problem.fab.index
    lv = problem.levels
    host = idx.gpu_host[gpus]
    if host.size and (host == host[0]).all():  # one host: the lexsort below reduces to this
        g = gpus[np.argsort(idx.gpu_local[gpus], kind="stable")]
        return g[:-1].copy(), g[1:].copy()
    order = np.lexsort((idx.gpu_local[gpus], *[lv.host_dom[host, j] for j in range(lv.host_dom.shape[1])][::-1]))
    g = gpus[order]
    h = idx.gpu_host[g]
    same = h[:-1] == h[1:]
    a_list, b_list = [g[:-1][same]], [g[1:][same]]
    hosts, starts = np.unique(h, return_index=True)
    seq = h[np.sort(starts)]
    if len(seq) >= 2:
        a, b = _host_links(g, h, hosts, starts, seq, np.asarray(idx.gpu_rail[g], np.int64))
        a_list.append(a)
        b_list.append(b)
    return np.concatenate(a_list), np.concatenate(b_list)


def _host_links(g: np.ndarray, h: np.ndarray, hosts: np.ndarray, starts: np.ndarray, seq: np.ndarray,
                rails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ring's host-to-host edges, host ``seq[i]`` to ``seq[i + 1]`` (wrapping): between the first
    GPUs (in ring order ``g``) on the lowest rail both hosts use, else between their first GPUs.
    ``hosts``/``starts`` are ``np.unique(h, return_index=True)``; rails outside 0..62 match nothing."""
    at = np.searchsorted(hosts, h)  # host position of each GPU
    ok = (rails >= 0) & (rails <= 62)
    mask = np.zeros(len(hosts), np.int64)
    np.bitwise_or.at(mask, at[ok], np.left_shift(1, rails[ok]))
    keys, first = np.unique(at[ok] * 64 + rails[ok], return_index=True)  # first GPU per (host, rail)
    first = np.flatnonzero(ok)[first]
    x = np.searchsorted(hosts, seq)
    y = np.roll(x, -1)
    common = mask[x] & mask[y]
    rail = np.frexp((common & -common).astype(np.float64))[1] - 1  # lowest common rail (exact: powers of 2)
    out = []
    for side in (x, y):
        k = np.searchsorted(keys, side * 64 + rail).clip(0, max(len(keys) - 1, 0))
        on_rail = g[first[k]] if len(keys) else g[starts[side]]
        out.append(np.where(common != 0, on_rail, g[starts[side]]))
    return out[0], out[1]


_PAIRS: weakref.WeakKeyDictionary[Fabric, dict[int, tuple[float, float]]] = weakref.WeakKeyDictionary()
_PAIRS_MAX = 200_000


def _edge_pairs(fab: Fabric, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bandwidth, latency) of edges a[i]-b[i]: ``fab.index.pair`` (element-wise), remembered per edge."""
    memo = _PAIRS.setdefault(fab, {})
    n = len(fab.gpus)
    keys = (a * n + b).tolist()
    missing = [i for i, k in enumerate(keys) if k not in memo]
    if missing:
        if len(memo) > _PAIRS_MAX:
            memo.clear()
        sel = np.array(missing, np.int64)
        _, bw, lat = fab.index.pair(a[sel], b[sel])
        for k, x, y in zip([keys[i] for i in missing], bw.tolist(), lat.tolist(), strict=True):
            memo[k] = (x, y)
    vals = [memo[k] for k in keys]
    return np.array([v[0] for v in vals], np.float64), np.array([v[1] for v in vals], np.float64)


def evaluate(problem: Problem, gpus: np.ndarray) -> tuple[float, dict[str, float], dict[str, int]]:
    """(total cost, breakdown by term, domains spanned per chain level) of a set of GPU indices."""
    w = problem.weights
    lv = problem.levels
    gpus = np.asarray(gpus, np.int64)
    idx = problem.fab.index
    hosts, counts = host_counts(idx.gpu_host[gpus])
    a, b = ring_edges(problem, gpus)
    if len(a):
        bw, lat = _edge_pairs(problem.fab, a, b)
        t = comm_ms(len(gpus), float(bw.min()), float(lat.max()), w)
    else:
        t = 0.0
    # distinct domains per chain level (a set per column of the few hosts' domain ids)
    doms = [list(set(col)) for col in lv.host_dom[hosts].T.tolist()]
    spans = {lv.chain[j]: len(doms[j]) for j in range(len(lv.chain))}
    span_cost = sum(w.span_weight(j) * spans[name] for j, name in enumerate(lv.chain))
    free = problem.free_all[hosts]
    frag = float((stranded(free - counts, lv.host_gpus[hosts], w) - stranded(free, lv.host_gpus[hosts], w)).sum())
    broken = sum(int(problem.pristine[j][doms[j]].sum()) for j in range(1, len(lv.chain)))
    breakdown = {"comm_ms": t, "comm": w.comm * t, "span": span_cost, "hosts": w.host * len(hosts),
                 "frag_gpus": frag, "frag": w.frag * frag, "pristine_broken": float(broken),
                 "pristine": w.pristine_break * broken}
    total = breakdown["comm"] + span_cost + breakdown["hosts"] + breakdown["frag"] + breakdown["pristine"]
    return float(total), breakdown, spans


def fragmentation(fab_free: np.ndarray, problem: Problem) -> float:
    """Cluster fragmentation: expected stranded GPUs / free GPUs (0 = none), FGD-style."""
    lv = problem.levels
    per_host = np.bincount(problem.fab.index.gpu_host, weights=fab_free.astype(np.float64),
                           minlength=len(lv.host_gpus)).astype(np.int64)
    total = per_host.sum()
    return float(stranded(per_host, lv.host_gpus, problem.weights).sum() / total) if total else 0.0
