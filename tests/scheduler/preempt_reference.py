"""The gang preemption of fabric_hpc.scheduler.preempt before it was vectorised (commit 24bdd43), as
the oracle of tests/scheduler/test_preempt_oracle.py: the fast version must choose the same victims, in
the same order, with the same placement, on every state. Changed since in what it promises: the
domains of a level are searched by a lower bound on their victims' cost (cheapest first, none dearer
than the set found), not by free GPUs, and reserved GPUs stay out of every placement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fabric_hpc.placement import ClusterState, Placement
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.scheduler.contract import DEFAULT_TIERS, Job, Placer, Preemption, SchedulerInput, Tier
from fabric_hpc.scheduler.placer import fit_gpus, masked_state, may_fit
from fabric_hpc.scheduler.preempt import gpu_hours_lost

@dataclass
class ReferenceGangPreemption:
    """A :class:`~fabric_hpc.scheduler.contract.PreemptionPolicy` (see module doc)."""

    tiers: dict[str, Tier] | None = None
    #: Restore cost a requeued gang pays on restart (s); counted in its loss.
    restore_s: float = 300.0
    #: Domains examined per blocked job at the chosen level.
    max_domains: int = 6
    #: Takes ``reserved=``, as GangPreemption.
    keeps_reserved: ClassVar[bool] = True

    def victims(self, job: Job, view: SchedulerInput, state: ClusterState, placer: Placer,
                reserved: np.ndarray | None = None) -> tuple[list[Preemption], Placement] | None:
        tiers = self.tiers or DEFAULT_TIERS
        cands = [r for r in view.running
                 if tiers.get(r.job.tier) is not None and tiers[r.job.tier].preemptible
                 and job.tier in tiers[r.job.tier].preempted_by and state.holds(r.job.id)]
        if not cands:
            return None
        fab = state.fab
        lv = fabric_levels(fab)
        gpu_host = fab.index.gpu_host
        pos = fab.gpu_pos
        idx = [np.fromiter((pos[g] for g in r.gpus), np.int64) for r in cands]
        free = state.free
        freeable = free.copy()  # free once every candidate is evicted: a superset of any trial's free GPUs
        for ix in idx:
            freeable[ix] = True
        if not may_fit(job.request, freeable, gpu_host, lv.host_gpus, lv):
            return None  # every trial would fail this necessary check: no victim set can work
        cost = np.array([gpu_hours_lost(r, view.now, self.restore_s) for r in cands])
        usable = np.ones(free.size, bool) if reserved is None else ~reserved
        freeable &= usable
        if not may_fit(job.request, freeable, gpu_host, lv.host_gpus, lv):
            return None
        best: tuple[tuple[float, int], list[int], np.ndarray] | None = None
        for level in range(len(lv.chain) + 1):
            dom_of_gpu = (lv.host_dom[gpu_host, level] if level < len(lv.chain)
                          else np.zeros(gpu_host.size, np.int64))
            ranked = []  # (lower bound, -free GPUs, domain)
            for d in range(int(dom_of_gpu.max()) + 1):
                inside = (dom_of_gpu == d) & usable
                held = [int(np.count_nonzero(inside[ix])) for ix in idx]
                free_in = int(np.count_nonzero(free & (dom_of_gpu == d)))
                if sum(held) == 0 or free_in + sum(held) < max(job.gpus, 1):
                    continue
                ranked.append((_bound(cost, held, job.gpus - free_in), -free_in, d))
            for bound, _, d in sorted(ranked)[: self.max_domains]:
                if best is not None and bound * (1 - 1e-9) > best[0][0]:
                    break
                inside = (dom_of_gpu == d) & usable
                if not may_fit(job.request, freeable & inside, gpu_host, lv.host_gpus, lv):
                    continue  # as above, within the domain: _in_domain would find nothing
                got = self._in_domain(job, state, placer, inside, idx, cost)
                if got is not None and (best is None or got[0] < best[0]):
                    best = got
            if best is not None:
                break
        if best is None:
            return None
        _, chosen, inside = best
        placement = placer.place(job, self._trial(state, inside, idx, chosen))
        if placement is None:  # the placer answered differently on the same state: not deterministic
            return None
        return ([Preemption(cands[i].job.id, job.id, gpu_hours_lost(cands[i], view.now, self.restore_s))
                 for i in chosen], placement)

    def _in_domain(self, job: Job, state: ClusterState, placer: Placer, inside: np.ndarray,
                   idx: list[np.ndarray],
                   cost: np.ndarray) -> tuple[tuple[float, int], list[int], np.ndarray] | None:
        """(cost, victims, the domain's mask) of the cheapest victim set found inside one domain."""
        held = {i: int(np.count_nonzero(inside[ix])) for i, ix in enumerate(idx)}  # each candidate's GPUs inside
        touching = sorted((i for i in held if held[i]), key=lambda i: (cost[i] / held[i], -idx[i].size))
        free_in = int(np.count_nonzero(state.free & inside))

        def fits(chosen: list[int]) -> bool:  # fewer free GPUs than the gang needs: no placer call
            if free_in + sum(held[i] for i in chosen) < job.gpus:
                return False
            return self._fits(job, state, placer, inside, idx, chosen)

        chosen: list[int] = []
        ok = fits(chosen)
        for i in touching:
            if ok:
                break
            chosen.append(i)
            ok = fits(chosen)
        if not ok or not chosen:
            return None
        for i in sorted(chosen, key=lambda i: -cost[i]):  # drop victims the placement does not need
            rest = [c for c in chosen if c != i]
            if rest and fits(rest):
                chosen = rest
        return (float(cost[chosen].sum()), len(chosen)), chosen, inside

    @staticmethod
    def _trial(state: ClusterState, inside: np.ndarray, idx: list[np.ndarray], chosen: list[int]) -> ClusterState:
        """``state`` with the ``chosen`` candidates released and everything outside the domain taken."""
        trial = state.copy()
        for i in chosen:
            trial.owner[idx[i]] = -1
        return masked_state(trial, ~inside)

    def _fits(self, job: Job, state: ClusterState, placer: Placer, inside: np.ndarray,
              idx: list[np.ndarray], chosen: list[int]) -> bool:
        return fit_gpus(placer, job, self._trial(state, inside, idx, chosen)) is not None


def _bound(cost: np.ndarray, held: list[int], short: int) -> float:
    """A lower bound on the cost of a victim set among the candidates holding ``held`` GPUs of a domain
    that frees the ``short`` GPUs it lacks: its cheapest candidate, or the cheapest fractional cover."""
    touching = sorted((cost[i] / h, i) for i, h in enumerate(held) if h)
    total, got = 0.0, 0
    for per, i in touching:
        if got + held[i] <= short:
            total += cost[i]
        elif got < short:
            total += per * (short - got)
        got += held[i]
    return max(min(cost[i] for _, i in touching), total)
