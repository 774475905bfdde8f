"""The vectorised gang preemption chooses exactly what the plain version chose.

The oracle is the code before the rewrite (:mod:`tests.scheduler.preempt_reference`): on random
states (gangs of every tier, partial and whole hosts, checkpoints, GPUs blocked by reservations,
down hosts) both must return the same victims in the same order, the same GPU-hours lost and the
same placement; one policy object asked again and again in a step (its per-gang memo), and whole
scheduling steps with either policy, must agree as well.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import (Backfill, GangPreemption, Job, MultifactorPriority, PendingJob, RunningJob,
                                  Scheduler, SchedulerInput, SolverPlacer)
from fabric_hpc.scheduler.placer import masked_state
from fabric_hpc.scheduler.record import decisions_digest
from fabric_hpc.topology import build, generators

from .preempt_reference import ReferenceGangPreemption

FABS = {"leaf-spine": build(generators.leaf_spine(hosts=8, hosts_per_leaf=2, gpus=8)),
        "superpod": build(generators.superpod(sus=2))}
TIERS = ["spot", "spot", "spot", "normal", "high"]
REQUESTS = [Request(nodes=1, gpus_per_node=8), Request(nodes=2, gpus_per_node=8), Request(nodes=3, gpus_per_node=4),
            Request(gpus=12), Request(nodes=4, gpus_per_node=8, max_domains=1), Request(gpus=6, max_domains=1),
            Request(nodes=2, whole_hosts=True), Request(nodes=8, gpus_per_node=8)]


def _state(fab, rng: random.Random, now: float) -> tuple[ClusterState, list[RunningJob]]:
    """Random gangs on random hosts (some partial), some hosts down, a few GPUs held by others."""
    st = ClusterState(fab)
    hosts = list(fab.hosts)
    rng.shuffle(hosts)
    st.set_down(hosts[: rng.randrange(0, 3)])
    running, k = [], 0
    free_hosts = [h for h in hosts[3:] if rng.random() < 0.9]
    while free_hosts:
        n = min(len(free_hosts), rng.choice([1, 1, 2, 4]))
        gpn = rng.choice([8, 8, 4, 2])
        on, free_hosts = free_hosts[:n], free_hosts[n:]
        gpus = tuple(g for h in on for g in fab.host_gpus(h)[:gpn])
        ckpt = rng.choice([None, None, 600.0, 1800.0])
        j = Job(id=f"r{k}", request=Request(nodes=n, gpus_per_node=gpn), submit=0.0, walltime=10_000.0,
                tier=rng.choice(TIERS), checkpoint_interval=ckpt)
        start = now - rng.choice([60.0, 600.0, 3600.0, 5400.0, 600.0])
        last = rng.choice([None, start + rng.random() * (now - start)])
        st.allocate(j.id, gpus)
        running.append(RunningJob(j, gpus, start, last))
        k += 1
    rng.shuffle(running)
    return st, running


def _answer(found):
    if found is None:
        return None
    victims, placement = found
    return ([(v.job_id, v.for_job, v.gpu_hours_lost) for v in victims], placement.gpus, placement.hosts)


def _compare(fab, seed: int) -> int:
    """Ask both policies about every request on one random state; the number of victim sets found."""
    rng, now = random.Random(seed), 10_000.0
    st, running = _state(fab, rng, now)
    reserved = None
    if rng.random() < 0.3:  # a reservation's GPUs, as the scheduler masks them (and passes them on)
        reserved = np.array([rng.random() < 0.2 for _ in fab.gpus])
        st = masked_state(st, reserved)
    restore = rng.choice([0.0, 300.0])
    new, ref = GangPreemption(restore_s=restore), ReferenceGangPreemption(restore_s=restore)
    found = 0
    for q, request in enumerate(REQUESTS):  # the same policy objects asked again: the memo in use
        job = Job(id=f"p{q}", request=request, submit=0.0, walltime=3600.0, tier=rng.choice(["high", "normal"]))
        view = SchedulerInput(now, [PendingJob(job)], running, st)
        want = _answer(ref.victims(job, view, st, SolverPlacer("greedy"), reserved))
        assert _answer(new.victims(job, view, st, SolverPlacer("greedy"), reserved)) == want, (seed, request)
        if want is not None and reserved is not None:  # no placement on a reserved GPU a victim freed
            assert not reserved[[fab.gpu_pos[g] for g in want[1]]].any()
        found += want is not None
        if want is not None and rng.random() < 0.5:  # evict them, as the scheduler does, and go on
            gone = {v for v, _, _ in want[0]}
            st = st.copy()
            for v in gone:
                st.release(v)
            running = [r for r in running if r.job.id not in gone]
    return found


@pytest.mark.parametrize("fab_name", sorted(FABS))
def test_same_victims_as_the_plain_version(fab_name):
    found = sum(_compare(FABS[fab_name], seed) for seed in range(40))
    assert found >= 40  # the states are not trivial: many requests do find victims


def test_memo_follows_now_restore_and_fabric():
    """Costs are recomputed when ``now`` or ``restore_s`` change; positions when the fabric does."""
    fab, rng = FABS["leaf-spine"], random.Random(7)
    st, running = _state(fab, rng, 10_000.0)
    new = GangPreemption()
    job = Job(id="p", request=Request(nodes=2, gpus_per_node=8), submit=0.0, walltime=3600.0, tier="high")
    for now, restore in ((10_000.0, 300.0), (12_000.0, 300.0), (12_000.0, 0.0)):
        new.restore_s = restore
        view = SchedulerInput(now, [PendingJob(job)], running, st)
        want = _answer(ReferenceGangPreemption(restore_s=restore).victims(job, view, st, SolverPlacer("greedy")))
        got = _answer(new.victims(job, view, st, SolverPlacer("greedy")))
        assert got == want and got is not None


def test_whole_steps_decide_the_same():
    """Scheduling steps (priorities, backfill, repeated preemption) with either policy."""
    preempted = 0
    for seed in range(12):
        fab, rng, now = FABS["superpod"], random.Random(1000 + seed), 10_000.0
        st, running = _state(fab, rng, now)
        pending = [PendingJob(Job(id=f"p{q}", request=rng.choice(REQUESTS), submit=float(q), walltime=3600.0,
                                  tier=rng.choice(["high", "normal", "normal", "spot"]), account=rng.choice("ab")))
                   for q in range(30)]

        def step(preemption, st=st, running=running, pending=pending, now=now):
            policy = Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(), preemption)
            return decisions_digest(policy.schedule(SchedulerInput(now, pending, running, st.copy())))

        want = step(ReferenceGangPreemption())
        assert step(GangPreemption()) == want, seed
        preempted += len(want["preempt"])
    assert preempted > 0
