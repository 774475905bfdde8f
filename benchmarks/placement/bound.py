"""A provable lower bound on the modelled collective over all placements: ``.venv/bin/python -m
benchmarks.placement.bound [--quick]``.

For the Lingjun instances of :mod:`benchmarks.placement.collective` (same replayed states, same
requests, contention on) it prints, per instance, slurm-tree's and cpsat's modelled ring all-reduce
(``cost.modelled_comm_ms``) and :func:`comm_lower_bound`, a time no placement of the request can beat;
``slurm-tree / bound`` then caps the gain over slurm-tree that any placer can reach on the instance.

Why :func:`comm_lower_bound` is a lower bound. ``modelled_comm_ms`` of a placement of ``n`` GPUs is
``floor(bw µs) + floor(lat µs)`` (in ms) of ``collective_time(..., algo="ring", background=...)``:

1. *Contention only adds time.* With other jobs' loads the job's max-min rate ``x`` still satisfies
   ``x · load_r ≤ cap_r`` on every resource, so ``bw ≥ max_r load_r / cap_r``, the time alone; the
   latency part does not depend on other jobs. The bound uses the ring alone; uplinks are left out
   too (their load only raises the max). Everything below is a lower bound on the alone ring.
2. *Bytes.* Each rank sends ``B = 2(n-1)/n · S`` in ``2(n-1)`` steps, whatever the placement.
3. *One NVLink domain* (``m = 1``): every GPU sends ``B`` over its NVLink port, so
   ``bw ≥ B / c_nvl`` (``c_nvl``: the largest effective NVLink port capacity of the fabric), and
   every flow is an NVLink flow: ``lat = steps · nvlink latency``. Possible only if some domain can
   hold the request (per the solvers' host capacities).
4. *Several domains* (``m ≥ 2``): a domain with ``k`` of the ring's GPUs sends ``B (k-1)/k`` over
   each GPU's NVLink port (``collective.ring_flows``), and its ``C`` channels leave through the
   ``p ≤ min(k, P)`` NICs its GPUs bring (``P``: most NICs of any domain; ``c_nic``: the largest
   effective NIC capacity), channel ``c`` on NIC
   ``c mod p``, each channel carrying ``B / C``: the busiest NIC carries ``B/C · ⌈C/p⌉ ≥ B/p``. So
   every domain of the ring forces ``bw ≥ B · g(k)`` with ``g(k) = max((k-1)/(k c_nvl), 1/(min(k, P)
   c_nic))`` and ``bw ≥ B · max_d g(k_d)``. The smallest such max over placements is found by a
   threshold search: for a candidate ``t = g(k)``, the allowed per-domain sizes ``{k : g(k) ≤ t}``
   are relaxed to their hull ``[a, b]`` (more placements, so still a bound); then ``q ≥ 2``
   domains can hold exactly ``N`` units iff ``q·a ≤ N ≤`` the sum of the ``q`` largest
   ``min(b, U_d)`` over domains with ``U_d ≥ a`` (each domain contributes any integer of its
   interval). Units are GPUs, or hosts of ``gpn`` GPUs for ``nodes=`` requests (``k = j · gpn``).
   The latency part is ``steps ×`` the ring's slowest flow: with ``L`` the lowest level at which
   one group holds the request, every placement spans two groups of level ``L-1``, so its cyclic
   ring has an edge meeting at level ``≥ L``, whose path latency is at least ``2 · PCIe +
   Σ_{lv<L} 2 · (least group latency at lv) + least group latency at the top`` (topology.index.pair).
5. The bound is the smaller of cases 3 and 4, each floored to whole µs like ``modelled_comm_ms``
   (floor is monotone).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import CollectiveParams, effective_cap, fabric_net
from fabric_hpc.placement.problem import Problem

QUANTUM_MS = 1e-3


@dataclass(frozen=True)
class Bound:
    ms: float  # the lower bound on modelled_comm_ms
    case: str  # "one domain" or "k=a..b over domains" (the case that gives it)


def _host_cap(p: Problem) -> np.ndarray:
    """The solvers' capacity of each host for the request (``Problem.cap``: GPUs, or 1 per usable
    host for ``nodes=``), the largest over rail patterns (a relaxation)."""
    cap = p.cap.copy()
    for pat in p.patterns or []:
        p.set_pattern(pat)
        cap = np.maximum(cap, p.cap)
    return cap


def _units(p: Problem, cap: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(units each NVLink domain can give, units requested, GPUs per unit). A host whose GPUs sit in
    several domains counts its whole capacity in each of them (a relaxation)."""
    idx = p.fab.index
    if (idx.gpu_nvl < 0).any():
        raise ConfigError("the collective bound needs every GPU in an NVLink domain",
                          hint="fabrics with NVLink-less GPUs are not covered by benchmarks.placement.bound")
    pairs = np.unique(np.stack([idx.gpu_host, idx.gpu_nvl]), axis=1)
    U = np.bincount(pairs[1], weights=cap[pairs[0]], minlength=int(idx.gpu_nvl.max()) + 1)
    return U.astype(np.int64), p.units, (p.gpn if p.nodes_mode else 1)


def _multi_domain(U: np.ndarray, N: int, u: int, g) -> tuple[float, str]:
    """Least ``t`` such that ≥ 2 domains can hold N units with every domain's g(k) ≤ t (hull relaxed)."""
    jmax = int(min(U.max(initial=0), N))
    if jmax < 1:
        return math.inf, "none"
    tj = np.array([g(j * u) for j in range(1, jmax + 1)])
    for t in np.unique(tj):
        ok = np.flatnonzero(tj <= t) + 1
        a, b = int(ok.min()), int(ok.max())
        room = np.sort(np.minimum(b, U[U >= a]))[::-1]
        q = np.arange(1, len(room) + 1)
        if np.any((q >= 2) & (q * a <= N) & (N <= np.cumsum(room))):
            return float(t), f"k={a * u}..{b * u} per domain"
    return math.inf, "none"


def _least_latency_us(p: Problem, cap: np.ndarray, N: int) -> float:
    """Least latency of a flow that a multi-domain ring of N units must have (docstring, 4)."""
    idx = p.fab.index
    path = idx.host_path
    nl = path.shape[1]
    # least group latency per level (0 where a level has no group)
    mgl = np.array([idx.group_latency_us[path[:, lv][path[:, lv] >= 0]].min(initial=np.inf) for lv in range(nl)])
    mgl[~np.isfinite(mgl)] = 0.0
    L = nl
    for lv in range(nl):
        ok = path[:, lv] >= 0
        if ok.any() and np.bincount(path[ok, lv], weights=cap[ok]).max(initial=0) >= N:
            L = lv
            break
    pcie = 2 * idx.pcie_latency_us
    lat = min(pcie + 2 * mgl[:top].sum() + mgl[min(top, nl - 1)] for top in range(L, nl + 1))
    first = np.searchsorted(idx.gpu_host, np.arange(len(p.fab.hosts)))
    last = np.r_[first[1:], len(idx.gpu_host)] - 1
    if np.any(idx.gpu_nvl[first] != idx.gpu_nvl[last]):  # hosts with several domains: PCIe between them
        lat = min(lat, idx.pcie_latency_us)
    return float(lat)


def comm_lower_bound(p: Problem, params: CollectiveParams | None = None) -> Bound:
    """A lower bound on ``cost.modelled_comm_ms`` over every placement of ``p``'s request (module
    docstring); ``inf`` where no placement of ≥ 2 GPUs exists."""
    params = params or CollectiveParams()
    fab, idx = p.fab, p.fab.index
    cap_h = _host_cap(p)
    U, N, u = _units(p, cap_h)
    n = N * u
    if n < 2:
        return Bound(0.0, "one GPU")
    net = fabric_net(fab)
    cap = effective_cap(net, params)
    c_nvl = float(cap[net.kind == 0].max())
    c_nic = float(cap[net.kind == 1].max())
    has = net.nic_key >= 0
    nics = np.unique(np.stack([idx.gpu_nvl[has], net.nic_key[has]]), axis=1)
    P = int(np.bincount(nics[0]).max(initial=0))  # most NICs of one domain
    B = 2.0 * (n - 1) / n * p.weights.message_mb * 2**20
    steps = 2 * (n - 1)

    def g(k: int) -> float:
        nvl = (k - 1) / k / c_nvl if k > 1 else 0.0
        return max(nvl, 1.0 / (min(k, P) * c_nic)) if P > 0 else math.inf

    def ms(bw_s: float, lat_s: float) -> float:
        shave = 1 - 1e-9  # float noise of the model's own arithmetic
        return (math.floor(bw_s * 1e6 * shave + 1e-6) + math.floor(lat_s * 1e6 * shave + 1e-6)) * QUANTUM_MS

    best = Bound(math.inf, "infeasible")
    if (U >= N).any():
        best = Bound(ms(B / c_nvl / 1e9, steps * idx.nvlink_latency_us * 1e-6), "one domain")
    t, case = _multi_domain(U, N, u, g)
    if math.isfinite(t):
        multi = ms(B * t / 1e9, steps * _least_latency_us(p, cap_h, N) * 1e-6)
        if multi < best.ms:
            best = Bound(multi, case)
    return best


def main(quick: bool = False) -> str:
    from benchmarks.placement.collective import fabrics, REQUESTS, run
    from benchmarks.placement.replay import replay
    from fabric_hpc.placement.request import parse_request

    seeds = (1,) if quick else (1, 2)
    out = ["| mix | seed | request | slurm-tree (ms) | cpsat (ms) | best of 4 (ms) | bound (ms) | "
           "bound case | slurm-tree / bound | cpsat / bound |", "|---|---|---|---|---|---|---|---|---|---|"]
    summary = ["| mix | instances | mean slurm-tree / cpsat | mean slurm-tree / bound (the most any placer "
               "can gain) | max slurm-tree / bound | mean cpsat / bound | cpsat at the bound |",
               "|---|---|---|---|---|---|---|"]
    for name, (fab, kind, weights, target) in fabrics(quick).items():
        if not name.startswith("lingjun"):
            continue
        rows = run(fab, REQUESTS[kind], seeds, weights, target)
        by = {}
        for r in rows:
            by.setdefault((r["seed"], r["text"]), {})[r["solver"]] = r["comm"]
        gains, caps, cps, tight = [], [], [], 0
        states = {s: replay(fab, s, target=target) for s in seeds}
        for (seed, text), comm in by.items():
            b = comm_lower_bound(Problem(fab, states[seed], parse_request(text), weights))
            st, cp = comm["slurm-tree"], comm["cpsat"]
            gains.append(st / cp)
            caps.append(st / b.ms)
            cps.append(cp / b.ms)
            tight += cp <= b.ms + 1e-9
            out.append(f"| {name} | {seed} | `{text}` | {st:.3f} | {cp:.3f} | {min(comm.values()):.3f} | "
                       f"{b.ms:.3f} | {b.case} | {st / b.ms:.3f} | {cp / b.ms:.3f} |")
        summary.append(f"| {name} | {len(caps)} | {np.mean(gains):.3f} | {np.mean(caps):.3f} | "
                       f"{max(caps):.3f} | {np.mean(cps):.3f} | {tight} of {len(cps)} |")
    return "\n".join(summary + [""] + out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    t0 = time.perf_counter()
    print(main(ap.parse_args().quick))
    print(f"\nwhole run {time.perf_counter() - t0:.0f} s")
