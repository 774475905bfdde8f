"""Gang scheduling policies: a pure step function over small swappable strategies.

Public surface::

    from fabric_hpc.scheduler import (Job, PendingJob, RunningJob, SchedulerInput, Decisions,
                                      slurm_policy, fabric_policy, UsageLedger)
    policy = fabric_policy()                 # or slurm_policy(), or Scheduler(...) from parts
    decisions = policy.schedule(SchedulerInput(now, pending, running, state, usage=ledger.usage()))

The contract (dataclasses and Protocols) is :mod:`fabric_hpc.scheduler.contract`; the simulator
that replays traces with the same code is :mod:`fabric_hpc.sim`. See docs/scheduler.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fabric_hpc.scheduler.contract import (DEFAULT_TIERS, TIERS, AccountFairshare, BackfillPolicy, Decisions, FairsharePolicy, Job,
                                           GpuFitter, PendingJob, Placer, PlacerStats, Preemption,
                                           PreemptionPolicy, PriorityPolicy, RankedPriority,
                                           Reservation, RunningJob, SchedulerInput, SchedulingPolicy, Tier)
from fabric_hpc.scheduler.core import Backfill, Scheduler
from fabric_hpc.scheduler.placer import SolverPlacer
from fabric_hpc.scheduler.policies import POLICIES, fabric_policy, make_policy, slurm_policy
from fabric_hpc.scheduler.preempt import GangPreemption, gpu_hours_lost
from fabric_hpc.scheduler.priority import ClassicFairshare, MultifactorPriority, UsageLedger

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric


def demo_compare(out_dir: str | os.PathLike[str], *, fabric: Fabric | None = None,
                 trace: str | list[Job] | None = None, policies: tuple[str, ...] = ("slurm", "fabric"),
                 progress: bool = False) -> dict[str, Any]:
    """Replay a bundled gang workload on the default SuperPOD (or ``fabric``; ``trace``: a trace file
    or jobs instead) with each of ``policies``; write the HTML report into ``out_dir`` and return the
    comparison table (``rows``: [metric, one value per policy]).

    See :func:`fabric_hpc.sim.demo.demo_compare`.
    """
    from fabric_hpc.sim.demo import demo_compare as _demo

    return _demo(out_dir, fabric=fabric, trace=trace, policies=policies, progress=progress)


__all__ = ["DEFAULT_TIERS", "POLICIES", "TIERS", "AccountFairshare", "Backfill", "BackfillPolicy",
           "ClassicFairshare", "Decisions", "FairsharePolicy", "GangPreemption", "GpuFitter", "Job",
           "MultifactorPriority", "PendingJob", "Placer", "PlacerStats", "Preemption", "PreemptionPolicy",
           "PriorityPolicy", "RankedPriority", "Reservation", "RunningJob", "Scheduler", "SchedulerInput",
           "SchedulingPolicy", "SolverPlacer", "Tier", "UsageLedger", "demo_compare", "fabric_policy",
           "gpu_hours_lost", "make_policy", "slurm_policy"]
