"""The two stock policies: the Slurm-like baseline and fabric's policy.

========  ==============================  ==========  ===================  ===========================
policy    priority                        backfill    placement            preemption
========  ==============================  ==========  ===================  ===========================
slurm     multifactor (age, size, tier,   EASY        ``slurm-tree``       none (spot waits like the
          fairshare, Slurm weights)                   (Slurm tree plugin)  others)
fabric    multifactor, fairshare-heavy,   EASY        ``greedy`` (fast) or gang-aware spot preemption
          small gangs first               (or cons.)  ``cpsat``            (cheapest victim set)
========  ==============================  ==========  ===================  ===========================

``fabric`` uses the greedy placer by default in the simulator (CP-SAT costs ~10-100 ms per decision,
too slow to replay tens of thousands of jobs on 2 cores); ``placement="cpsat"`` selects the optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import SolveOptions
from fabric_hpc.scheduler.contract import DEFAULT_TIERS, SchedulingPolicy
from fabric_hpc.scheduler.core import Backfill, Scheduler
from fabric_hpc.scheduler.placer import SolverPlacer
from fabric_hpc.scheduler.preempt import GangPreemption
from fabric_hpc.scheduler.priority import ClassicFairshare, MultifactorPriority, tier_weight_to_dominate

POLICIES = ("slurm", "fabric")


def slurm_policy(*, shares: Mapping[str, float] | None = None, placement: str = "slurm-tree",
                 max_job_test: int = 100) -> Scheduler:
    """Slurm-like baseline: multifactor priority + EASY backfill + the tree plugin's placement. Its
    weights let tiers dominate (W_tier 100000: adjacent tiers 50000 apart, the other terms at most
    12000 together; ``MultifactorPriority.other_terms_max``)."""
    _check_args(shares=shares, max_job_test=max_job_test)
    prio = MultifactorPriority(fairshare=ClassicFairshare(dict(shares or {})))
    return Scheduler("slurm", prio, SolverPlacer(placement), Backfill.easy(max_job_test))


def fabric_policy(*, shares: Mapping[str, float] | None = None, placement: str = "greedy",
                  backfill: str = "easy", max_job_test: int = 100, restore_s: float = 300.0,
                  cpsat_time_limit_s: float = 0.2, preemption: bool = True, weight_walltime: float = 60_000.0,
                  favor_small: bool = True, compact_wait_s: float | None = 900.0,
                  preempt_benefit_ratio: float = 20.0, preempting_tiers: tuple[str, ...] = ("high",),
                  short_by_area: bool = False) -> Scheduler:
    """fabric: multifactor priority with fairshare, short-walltime (``short_by_area=True``: smallest
    GPU-time request; off by default, docs/scheduler.md) and small-gang factors; backfill;
    topology-aware placement (greedy or cpsat) with compact-or-wait admission of multi-host gangs;
    gang-aware preemption of spot jobs when the waiting it saves (gang GPUs × hours to its earliest
    start, from walltime limits) is at least ``preempt_benefit_ratio`` (20) times the GPU-hours it
    destroys (docs/scheduler.md, "Gang-aware preemption", says why 20 and what it was measured against)."""
    _check_args(shares=shares, max_job_test=max_job_test, restore_s=restore_s, cpsat_time_limit_s=cpsat_time_limit_s,
                weight_walltime=weight_walltime, compact_wait_s=compact_wait_s,
                preempt_benefit_ratio=preempt_benefit_ratio, preempting_tiers=preempting_tiers)
    if not isinstance(short_by_area, bool):
        raise ConfigError(f"short_by_area must be True or False, got {short_by_area!r}")
    prio = MultifactorPriority(weight_fairshare=20_000.0, weight_size=2000.0, favor_small=favor_small,
                               weight_walltime=weight_walltime, short_by_area=short_by_area,
                               fairshare=ClassicFairshare(dict(shares or {})))
    bf = {"easy": Backfill.easy, "conservative": Backfill.conservative, "none": Backfill.none}
    if backfill not in bf:
        raise ConfigError(f"unknown backfill {backfill!r}", hint="easy, conservative or none")
    placer = SolverPlacer(placement, SolveOptions(time_limit_s=cpsat_time_limit_s, workers=1))
    tiers = dict(DEFAULT_TIERS)
    tiers["spot"] = replace(tiers["spot"], preempted_by=tuple(preempting_tiers))
    # tiers dominate: adjacent tiers twice as far apart as every other term together can reach
    prio.weight_tier = max(prio.weight_tier, tier_weight_to_dominate(prio, tiers))
    return Scheduler("fabric", prio, placer, bf[backfill](max_job_test),
                     GangPreemption(tiers, restore_s=restore_s) if preemption else None, tiers=tiers,
                     compact_wait_s=compact_wait_s, preempt_benefit_ratio=preempt_benefit_ratio)


def _check_args(**args) -> None:
    """The stock policies' parameters: a NaN or a negative value would quietly change every
    decision (or, with ``max_job_test=0``, start nothing), so each is refused by name."""
    def number(name: str, v, low: float, strict: bool = False) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or (v <= low if strict else v < low):
            raise ConfigError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {v!r}")

    mjt = args.pop("max_job_test")
    if isinstance(mjt, bool) or not isinstance(mjt, int) or mjt < 1:
        raise ConfigError(f"max_job_test must be a whole number >= 1, got {mjt!r}",
                          hint="how many pending jobs a step examines (Slurm's bf_max_job_test)")
    for account, share in dict(args.pop("shares") or {}).items():
        number(f"shares[{account!r}]", share, 0.0)
    tiers = args.pop("preempting_tiers", ())
    if isinstance(tiers, str) or not all(isinstance(t, str) for t in tiers):
        raise ConfigError(f"preempting_tiers must be a list of tier names, got {tiers!r}", hint='e.g. ("high",)')
    for name, v in args.items():
        if v is not None or name != "compact_wait_s":
            number(name, v, 0.0, strict=name == "cpsat_time_limit_s")


def make_policy(name: str, **kwargs) -> SchedulingPolicy:
    """The policy called ``name`` (:data:`POLICIES`): ``"slurm"`` is :func:`slurm_policy` (taking
    ``shares``, ``placement`` and ``max_job_test`` only), ``"fabric"`` is :func:`fabric_policy`;
    ``kwargs`` go to it. An unknown name or option is a ConfigError naming the valid ones."""
    if name == "slurm":
        other = sorted(set(kwargs) - {"shares", "placement", "max_job_test"})
        if other:
            raise ConfigError(f"the slurm policy takes no {', '.join(other)} (fabric's policy options)",
                              hint="use them with policy fabric, or leave them out")
        return slurm_policy(**kwargs)
    if name == "fabric":
        return fabric_policy(**kwargs)
    raise ConfigError(f"unknown policy {name!r}", hint=f"policies: {', '.join(POLICIES)}")
