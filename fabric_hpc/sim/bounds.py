"""A lower bound on the mean job completion time (JCT) any scheduler can reach on a workload.

For every schedule of rigid gangs on a cluster of ``G`` GPUs that runs every job to completion —
any order, any placement, with or without backfill or preemption — each job ``j`` (submitted at
``r_j``, running ``d_j`` seconds on ``g_j`` GPUs at its ideal speed):

1. ends no earlier than ``r_j + d_j`` (a stretch from contention or a scattered placement, a
   restore after preemption and the work lost with it only add time), so the mean JCT is at
   least the mean ideal duration;
2. receives ``g_j · d_j`` GPU-seconds of work while the cluster delivers at most ``G`` GPU-seconds
   per second. Such a schedule is a preemptive schedule of the same work on one machine of
   speed ``G``, where shortest-remaining-processing-time first (SRPT) minimises the sum of
   completion times (Schrage, 1968; a time-shared schedule does no better: run its jobs in the
   order they finish in it and none finishes later). SRPT's mean JCT on that machine is a bound.

The bound is the larger of the two. It ignores that gangs are rigid and that GPUs sit in hosts,
so no real schedule reaches it; what it shows is how much of a baseline's mean JCT *no* policy
can remove: ``1 - bound / baseline`` caps any policy's JCT reduction. It holds for policies that
finish every job: a policy that kills jobs at their walltime averages over fewer jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler.contract import Job


@dataclass(frozen=True)
class JctBound:
    """Lower bounds on the mean JCT (s) of the jobs: ``mean_s`` is the larger of the other two."""

    mean_s: float
    ideal_s: float  # mean ideal duration
    srpt_s: float  # SRPT on one machine with the cluster's GPU-seconds per second

    def max_reduction(self, baseline_mean_s: float) -> float:
        """The largest mean-JCT reduction any policy that finishes every job can reach against a
        baseline's measured mean JCT (s)."""
        return 1.0 - self.mean_s / baseline_mean_s if baseline_mean_s > 0 else 0.0


def jct_lower_bound(jobs: Sequence[Job], cluster_gpus: int) -> JctBound:
    """:class:`JctBound` of ``jobs`` (each with its simulator ``duration``) on ``cluster_gpus`` GPUs."""
    if cluster_gpus <= 0:
        raise ConfigError(f"cluster_gpus must be > 0 (got {cluster_gpus})")
    if not jobs:
        return JctBound(0.0, 0.0, 0.0)
    missing = [j.id for j in jobs if j.duration is None]
    if missing:
        raise ConfigError(f"{len(missing)} job(s) without a duration (e.g. {missing[0]})",
                          hint="the bound needs each job's ideal run time: a simulator workload")
    release = np.array([j.submit for j in jobs], float)
    duration = np.array([j.duration for j in jobs], float)
    work = np.array([j.gpus for j in jobs], float) * duration / cluster_gpus
    srpt = float(srpt_completions(release, work).mean() - release.mean())
    ideal = float(duration.mean())
    return JctBound(max(srpt, ideal), ideal, srpt)


def srpt_completions(release: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Completion time of each job on one unit-speed machine under preemptive SRPT (ties: the
    earlier release, then the lower index)."""
    order = np.lexsort((np.arange(release.size), release))
    done = np.empty(release.size)
    heap: list[tuple[float, float, int]] = []  # (remaining work, release, index)
    t = 0.0
    k = 0
    while k < order.size or heap:
        if not heap:  # idle until the next release
            t = max(t, float(release[order[k]]))
        while k < order.size and release[order[k]] <= t:
            i = int(order[k])
            heapq.heappush(heap, (float(work[i]), float(release[i]), i))
            k += 1
        rem, rel, i = heapq.heappop(heap)
        nxt = float(release[order[k]]) if k < order.size else float("inf")
        if t + rem <= nxt:  # finishes before anything new arrives
            t += rem
            done[i] = t
        else:  # runs until the next release, then competes again
            heapq.heappush(heap, (rem - (nxt - t), rel, i))
            t = nxt
    return done
