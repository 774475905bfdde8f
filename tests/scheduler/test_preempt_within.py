"""The cost-aware preemption search (``victims_within``) answers as the plain one.

``GangPreemption.victims_within`` may skip domains whose lower bound on every victim set's cost is
already refused, and then answers ``TOO_COSTLY``: only where the plain ``victims`` answers None or a
set the test refuses. Where it answers a set, it is the plain answer. Checked on the random states of
the preemption oracle with refusal thresholds at, just below and around each plain answer's cost,
and on whole scheduling steps with ``preempt_benefit_ratio`` (decisions equal to a policy that only
offers ``victims``).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from fabric_hpc.scheduler import (Backfill, GangPreemption, Job, MultifactorPriority, PendingJob, Scheduler,
                                  SchedulerInput, SolverPlacer)
from fabric_hpc.scheduler.contract import TOO_COSTLY, CostAwarePreemption
from fabric_hpc.scheduler.placer import masked_state
from fabric_hpc.scheduler.record import decisions_digest

from .test_preempt_oracle import FABS, REQUESTS, _answer, _state


class PlainPreemption:
    """Offers only ``victims`` (the scheduler then searches every time)."""

    def __init__(self) -> None:
        self.inner = GangPreemption()

    def victims(self, job, view, state, placer):
        return self.inner.victims(job, view, state, placer)


def _loss(found) -> float:
    return sum(v.gpu_hours_lost for v in found[0])  # as the scheduler sums them


def _check(fab, seed: int) -> tuple[int, int]:
    """(answers skipped as too costly while the plain one found a set, accepted sets compared)."""
    rng, now = random.Random(seed), 10_000.0
    st, running = _state(fab, rng, now)
    if rng.random() < 0.3:
        st = masked_state(st, np.array([rng.random() < 0.2 for _ in fab.gpus]))
    pol, placer = GangPreemption(), SolverPlacer("greedy")
    skipped = accepted = 0
    tiers = ["high", "normal"]
    for q, request in enumerate(REQUESTS):
        job = Job(id=f"p{q}", request=request, submit=0.0, walltime=3600.0, tier=rng.choice(tiers))
        view = SchedulerInput(now, [PendingJob(job)], running, st)
        plain = pol.victims(job, view, st, placer)
        cost = _loss(plain) if plain is not None else 1.0
        for limit in (0.0, cost / 2, cost * (1 - 1e-12), cost, cost * (1 + 1e-12), cost * 2, np.inf):
            got = pol.victims_within(job, view, st, placer, lambda lost, limit=limit: lost > limit)
            if got is TOO_COSTLY:
                assert plain is None or _loss(plain) > limit, (seed, request, limit)
                skipped += plain is not None
            else:
                assert _answer(got) == _answer(plain), (seed, request, limit)
                accepted += got is not None
    return skipped, accepted


@pytest.mark.parametrize("fab_name", sorted(FABS))
def test_within_answers_as_the_plain_search(fab_name):
    skipped = accepted = 0
    for seed in range(30):
        s, a = _check(FABS[fab_name], seed)
        skipped, accepted = skipped + s, accepted + a
    assert skipped >= 20 and accepted >= 20  # both kinds of answer were exercised


def test_offered():
    assert isinstance(GangPreemption(), CostAwarePreemption)
    assert not isinstance(PlainPreemption(), CostAwarePreemption)


@pytest.mark.parametrize("ratio", [0.5, 5.0, 20.0, 200.0])
def test_whole_steps_decide_the_same(ratio):
    """Scheduling steps with the benefit ratio: the cost-aware search against the plain one."""
    preempted = 0
    for seed in range(10):
        fab, rng, now = FABS["superpod"], random.Random(2000 + seed), 10_000.0
        st, running = _state(fab, rng, now)
        tiers = ["high", "normal", "normal", "spot"]
        pending = [PendingJob(Job(id=f"p{q}", request=rng.choice(REQUESTS), submit=float(q), walltime=3600.0,
                                  tier=rng.choice(tiers), account=rng.choice("ab"))) for q in range(30)]

        def step(preemption, st=st, running=running, pending=pending, now=now):
            policy = Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(),
                               preemption, preempt_benefit_ratio=ratio)
            return decisions_digest(policy.schedule(SchedulerInput(now, pending, running, st.copy())))

        want = step(PlainPreemption())
        assert step(GangPreemption()) == want, (seed, ratio)
        preempted += len(want["preempt"])
    assert preempted > 0 or ratio > 20  # evictions happen (none pay off at the largest ratio)
