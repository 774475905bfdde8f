"""Gang preemption's table of the running gangs, followed from call to call (``gangtable._GangIndex``:
cut to the gangs left, the new ones appended, the costs computed again as arrays at each new time),
equals a fresh build with every cost :func:`gpu_hours_lost` bit for bit (the 50k replay: issue 21)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import GangPreemption, Job, PendingJob, RunningJob, SchedulerInput
from fabric_hpc.scheduler.gangtable import _Running
from fabric_hpc.scheduler.preempt import gpu_hours_lost
from fabric_hpc.topology import build, generators

from .test_preempt_gang_table import JOB, _same

FAB = build(generators.leaf_spine(hosts=16, hosts_per_leaf=4, gpus=8))


def _gang(rng: random.Random, n: int, gpus: tuple[str, ...], now: float) -> RunningJob:
    start = now - rng.choice([0.0, 1.0, 59.5, 600.0, 3600.0 * rng.random(), 86_400.0 * rng.random()])
    every = rng.choice([None, 600.0, 1800.0, 7.3, 1e-3 + rng.random() * 5000])
    last = rng.choice([None, None, start, start + (now - start) * rng.random()])
    job = Job(id=f"g{n}", request=Request(gpus=len(gpus)), submit=0.0, walltime=9_000.0,
              tier=rng.choice(["spot", "normal", "preemptible"]), checkpoint_interval=every)
    return RunningJob(job, gpus, start, last, preemptible=rng.random() > 0.1)


@pytest.mark.parametrize("seed", range(4))
def test_costs_are_gpu_hours_lost_bit_for_bit(seed):
    rng = random.Random(seed)
    gpus = FAB.gpus
    for _ in range(30):
        now = rng.choice([1.0, 10_000.0, 1e6 * rng.random(), 3.7e7 + rng.random()])
        runs = [_gang(rng, k, tuple(gpus[: rng.randint(1, 16)]), now) for k in range(rng.randint(1, 40))]
        idx = [np.arange(len(r.gpus)) for r in runs]
        for restore in (0.0, 300.0, 17.25):
            got = _Running.of(runs, idx, (now, restore)).c.cost
            want = [gpu_hours_lost(r, now, restore) for r in runs]
            assert [float(x).hex() for x in got] == [w.hex() for w in want]


@pytest.mark.parametrize("seed", range(6))
def test_a_followed_table_equals_a_fresh_one(seed):
    """Random histories: gangs end (anywhere), start (at the end, as the simulator appends them, or
    elsewhere), victims leave within a step, time moves or stands, the list is reordered or copied."""
    rng = random.Random(seed)
    st, running, n = ClusterState(FAB), [], 0
    p, now = GangPreemption(), 50_000.0
    for _ in range(60):
        for r in rng.sample(running, k=min(len(running), rng.randint(0, 3))):  # ends
            st.release(r.job.id)
            running.remove(r)
        free_hosts = [h for h in FAB.hosts if all(st.owner[FAB.gpu_pos[g]] < 0 for g in FAB.host_gpus(h))]
        for h in rng.sample(free_hosts, k=min(len(free_hosts), rng.randint(0, 3))):  # starts
            gpus = tuple(FAB.host_gpus(h)[: rng.choice([2, 4, 8])])
            r = _gang(rng, n, gpus, now)
            n += 1
            st.allocate(r.job.id, gpus)
            running.insert(len(running) if rng.random() < 0.8 else rng.randint(0, len(running)), r)
        if rng.random() < 0.05:
            running.reverse()
        running = list(running) if rng.random() < 0.5 else running
        now += rng.choice([0.0, 0.0, 1.0, 30.0, 977.5])
        _same(p, running, st, now)
        view = SchedulerInput(now, [PendingJob(JOB)], running, st)
        got = p._candidates(JOB, view, st)
        if got is not None:  # the costs are those of the plain function at this time
            assert [float(x).hex() for x in got.cost] == [gpu_hours_lost(r, now, p.restore_s).hex()
                                                          for r in got.runs]
        table = p._index.last
        if table is not None and running:
            assert table.job_ids == [r.job.id for r in running]
            assert [table.tier_names[t] for t in table.tier] == [r.job.tier for r in running]
            assert table.preemptible.tolist() == [r.preemptible for r in running]
