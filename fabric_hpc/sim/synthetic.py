"""A synthetic multi-host gang workload whose distributions are parameters with published defaults.

Defaults (:class:`GangWorkload`) are shaped after three published studies of GPU clusters:

* **Philly** — Jeon et al., "Analysis of Large-Scale Multi-Tenant GPU Clusters for DNN Training
  Workloads", USENIX ATC'19: most jobs use one GPU, but multi-GPU / multi-server jobs take most GPU
  time; run times are heavy-tailed (minutes to weeks); locality matters for utilisation.
* **Helios** — Hu et al., "Characterization and Prediction of Deep Learning Workloads in
  Large-Scale GPU Datacenters", SC'21: single-GPU jobs are the majority of jobs; large jobs (≥ 8 GPUs)
  are a small fraction of jobs but the bulk of GPU-time; durations roughly log-normal.
* **Acme** — Hu et al., "Characterization of Large Language Model Development in the Datacenter",
  NSDI'24: LLM pretraining gangs of hundreds to thousands of GPUs alongside many short evaluation
  jobs; jobs checkpoint periodically (tens of minutes) and failures / preemptions cost the work
  since the last checkpoint.

The exact numbers below are our reading of those distributions, scaled to a cluster of a few
thousand GPUs (the largest gang is 1/8 of a 1,024-GPU SuperPOD by default), not values copied from
the papers: ``size_mix`` (GPUs → probability), log-normal durations (median ``median_duration_s``,
``sigma``) growing with size as ``gpus ** size_duration_exp``, Poisson arrivals at the rate that
makes the offered load ``load`` (GPU-seconds demanded / GPU-seconds available), user walltime
estimates ``duration × U(walltime_factor)`` rounded up to 15 minutes (users over-estimate: Tsafrir
et al., "Backfilling Using System-Generated Predictions", TPDS 2007), tier and account mixes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.sim.contention import DEFAULT_COMM_FRACTION

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric


@dataclass(frozen=True)
class GangWorkload:
    jobs: int = 2000
    cluster_gpus: int = 1024
    gpus_per_host: int = 8
    #: Offered load: Σ gpus × duration / (cluster GPUs × arrival horizon).
    load: float = 0.95
    size_mix: dict[int, float] = field(default_factory=lambda: {
        1: 0.35, 2: 0.08, 4: 0.10, 8: 0.17, 16: 0.12, 32: 0.09, 64: 0.06, 128: 0.03})
    median_duration_s: float = 1800.0
    sigma: float = 1.2
    size_duration_exp: float = 0.25
    max_duration_s: float = 2 * 86_400.0
    walltime_factor: tuple[float, float] = (1.2, 3.0)
    tier_mix: dict[str, float] = field(default_factory=lambda: {"high": 0.15, "normal": 0.55, "spot": 0.30})
    accounts: dict[str, float] = field(default_factory=lambda: {"llm": 0.4, "vision": 0.25, "speech": 0.2,
                                                                  "research": 0.15})
    checkpoint_interval_s: float = 1800.0
    #: Communication heaviness per job: its ``comm_fraction`` is the default (sim.contention) × U(lo, hi).
    comm_sensitivity: tuple[float, float] = (0.5, 1.5)
    #: Tensor-parallel group size of every job whose GPU count it divides (and whose hosts' GPUs it
    #: divides or is a multiple of) and whose groups fit the NVLink domains (``nvlink_hosts``): its
    #: request carries ``tp`` (docs/placement.md). 1: none. A tp that no gang can take is refused.
    tp: int = 1
    #: Pipeline-parallel stages of every job whose GPU count ``tp·pp`` divides (``request.pp``). 1: none.
    pp: int = 1
    #: Hosts in each NVLink domain of the fabric replayed on (a host in none counts as a domain of
    #: one): a tp group wider than a host needs ``tp / gpus_per_host`` of them in one domain.
    #: ``fabric sim run`` sets it (:func:`fabric_sizes`); empty: not known, not checked.
    nvlink_hosts: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        from fabric_hpc.errors import ConfigError
        from fabric_hpc.inputs import finite

        for name, lo, hi in (("jobs", 1, MAX_JOBS), ("cluster_gpus", 1, 10_000_000), ("gpus_per_host", 1, 1024),
                             ("tp", 1, 1024), ("pp", 1, 1024), ("seed", 0, 2**63 - 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"synthetic: {name}={v!r} must be a whole number in {lo}..{hi:,}",
                                  hint="e.g. synthetic:jobs=2000,load=0.95,seed=1")
        if not all(isinstance(d, int) and d >= 1 for d in self.nvlink_hosts):
            raise ConfigError(f"synthetic: nvlink_hosts={self.nvlink_hosts!r} must be host counts (whole numbers >= 1)")
        source = "synthetic"
        finite(self.load, "load", lo=0.001, hi=100, source=source)
        finite(self.median_duration_s, "median_duration_s", lo=1, hi=1e9, source=source)
        finite(self.max_duration_s, "max_duration_s", lo=60, hi=1e9, source=source)
        finite(self.sigma, "sigma", lo=0, hi=10, source=source)
        finite(self.size_duration_exp, "size_duration_exp", lo=-4, hi=4, source=source)
        finite(self.checkpoint_interval_s, "checkpoint_interval_s", lo=0, hi=1e9, lo_open=True, source=source)


#: Most jobs a synthetic workload may have (100,000 take ~0.5 GB and ~25 s to replay at a low load;
#: 2,000,000 took over 4 GB before finishing, so the bound is what a laptop-sized run can hold).
MAX_JOBS = 500_000


def gang_workload(spec: GangWorkload | None = None, **overrides) -> list[Job]:
    """Jobs drawn from ``spec`` (deterministic for a seed)."""
    if spec is None:
        spec = GangWorkload(**overrides)
    rng = np.random.default_rng(spec.seed)
    # gangs larger than the cluster could never run: they are left out of the mix, so ``load`` is
    # the load of jobs that fit (as documented), not diluted by rejections
    mix = {k: v for k, v in spec.size_mix.items() if k <= spec.cluster_gpus} or {min(spec.size_mix): 1.0}
    sizes_k = np.array(list(mix), np.int64)
    probs = np.array(list(mix.values()), float)
    sizes = rng.choice(sizes_k, size=spec.jobs, p=probs / probs.sum())
    dur = np.exp(rng.normal(math.log(spec.median_duration_s), spec.sigma, spec.jobs)) * sizes ** spec.size_duration_exp
    dur = np.clip(np.round(dur), 60, spec.max_duration_s)
    work = float((sizes * dur).sum())
    horizon = work / (spec.cluster_gpus * spec.load)
    gaps = rng.exponential(horizon / spec.jobs, spec.jobs)
    submit = np.round(np.cumsum(gaps) - gaps[0])
    lo, hi = spec.walltime_factor
    wall = np.ceil(dur * rng.uniform(lo, hi, spec.jobs) / 900.0) * 900.0
    tiers = rng.choice(list(spec.tier_mix), size=spec.jobs, p=_norm(spec.tier_mix))
    accts = rng.choice(list(spec.accounts), size=spec.jobs, p=_norm(spec.accounts))
    sens = rng.uniform(*spec.comm_sensitivity, spec.jobs)
    jobs = []
    parallel = _Parallel(spec, [int(k) for k in sizes_k])
    for i in range(spec.jobs):
        n = int(sizes[i])
        nodes, gpn = _shape(n, spec.gpus_per_host)
        tp, pp = parallel.of(nodes, gpn)
        req = Request(nodes=nodes, gpus_per_node=gpn, tp=tp, pp=pp)
        jobs.append(Job(id=f"g{i:06d}", request=req, submit=float(submit[i]), walltime=float(wall[i]),
                        account=str(accts[i]), user=f"u{i % 23}", tier=str(tiers[i]), duration=float(dur[i]),
                        checkpoint_interval=spec.checkpoint_interval_s if n > 1 else None,
                        meta={"comm_fraction": round(DEFAULT_COMM_FRACTION * float(sens[i]), 4)}))
    return jobs


def _shape(gpus: int, gpus_per_host: int) -> tuple[int, int]:
    """(nodes, GPUs per node) of a gang of ``gpus``: one host up to a host's GPUs, else whole hosts."""
    return (1, gpus) if gpus <= gpus_per_host else (math.ceil(gpus / gpus_per_host), gpus_per_host)


class _Parallel:
    """Which gangs get ``spec.tp`` and ``spec.pp``; refuses (ConfigError) a tp or pp that no gang
    size of the mix (``sizes``) can take, naming why."""

    def __init__(self, spec: GangWorkload, sizes: list[int]) -> None:
        self.spec = spec
        self._room: dict[int, int] = {}  # hosts per group -> groups the NVLink domains hold at most
        shapes = [_shape(n, spec.gpus_per_host) for n in sorted(set(sizes))]
        if spec.tp > 1 and not any(self._tp(*s) for s in shapes):
            raise _no_gang_takes_tp(spec, sorted(set(sizes)))
        if spec.pp > 1 and not any(self.of(*s)[1] for s in shapes):
            from fabric_hpc.errors import ConfigError

            raise ConfigError(f"synthetic: pp={spec.pp}: no gang size of the mix ({_listed(sizes)} GPUs) splits "
                              f"into {spec.pp} pipeline stages" + (f" of whole tp={spec.tp} groups" if spec.tp > 1 else ""),
                              hint="use a pp that divides some gang sizes (e.g. pp=2), or leave it out")

    def _tp(self, nodes: int, gpn: int) -> int | None:
        tp, domains = self.spec.tp, self.spec.nvlink_hosts
        if tp <= 1 or (nodes * gpn) % tp or (gpn % tp and tp % gpn):
            return None
        if tp <= gpn or not domains:
            return tp  # each group inside a host (or the domains are not known)
        span = tp // gpn  # hosts per group, all in one NVLink domain
        if span not in self._room:
            self._room[span] = sum(d // span for d in domains)
        return tp if self._room[span] >= nodes // span else None

    def of(self, nodes: int, gpn: int) -> tuple[int | None, int | None]:
        """(tp, pp) of a gang of ``nodes`` × ``gpn`` GPUs (None: not set)."""
        tp = self._tp(nodes, gpn)
        pp = self.spec.pp if self.spec.pp > 1 and not (nodes * gpn) % (self.spec.pp * (tp or 1)) else None
        return tp, pp


def _listed(sizes: list[int]) -> str:
    return ", ".join(map(str, sorted(set(sizes))))


def _no_gang_takes_tp(spec: GangWorkload, sizes: list[int]) -> Exception:
    """The ConfigError for a tp that no gang size of the mix can take, naming the binding reason."""
    from fabric_hpc.errors import ConfigError

    tp, g, domains = spec.tp, spec.gpus_per_host, spec.nvlink_hosts
    most = max(domains, default=0)
    if domains and tp > g and not tp % g and tp // g > most:
        return ConfigError(
            f"synthetic: tp={tp}: a tensor-parallel group of {tp} GPUs spans {tp // g} hosts of "
            f"gpus_per_host={g}, and " + ("every NVLink domain of the fabric is a single host" if most == 1 else
                                          f"the fabric's NVLink domains hold at most {most} hosts")
            + ": no gang could keep a group in one NVLink domain",
            hint=f"use tp <= {most * g} (a group within one NVLink domain), a larger gpus_per_host if the "
                 "fabric's hosts have more GPUs" + (", or a fabric with multi-host NVLink domains (e.g. nvl72)"
                                                   if most == 1 else ""))
    if tp > g and tp % g:
        return ConfigError(f"synthetic: tp={tp} is neither a divisor nor a multiple of gpus_per_host={g}: "
                           "no gang's groups would fill whole hosts or fit inside one",
                           hint=f"use a tp that divides {g} or is a multiple of it")
    if any(not n % tp for n in sizes):
        return ConfigError(f"synthetic: tp={tp}: the fabric's {len(domains)} NVLink domain(s) of at most {most} "
                           f"hosts hold too few groups of {tp // g} hosts for any gang of the mix that tp divides",
                           hint=f"use a smaller tp (at most {most * g}), or a fabric with more NVLink domains")
    return ConfigError(f"synthetic: tp={tp} divides no gang size of the mix ({_listed(sizes)} GPUs)",
                       hint=f"use a tp that divides some of them (e.g. tp={min(g, max(sizes))})")


def fabric_sizes(fab: Fabric) -> dict[str, object]:
    """What :class:`GangWorkload` takes from the fabric it is replayed on: ``cluster_gpus`` (its GPUs),
    ``gpus_per_host`` (its largest host) and ``nvlink_hosts`` (hosts per NVLink domain)."""
    from fabric_hpc.placement.levels import fabric_levels

    lv = fabric_levels(fab)
    with_gpus = lv.host_gpus > 0
    dom = lv.host_dom[with_gpus, lv.alias["nvlink"]]
    counts = np.bincount(dom)
    return {"cluster_gpus": max(len(fab.gpus), 1), "gpus_per_host": max(int(lv.host_gpus.max(initial=0)), 1),
            "nvlink_hosts": tuple(int(c) for c in counts[counts > 0]) or (1,)}


def _norm(mix: dict[str, float]) -> np.ndarray:
    p = np.array(list(mix.values()), float)
    return p / p.sum()
