"""Pinned schedules: speed work on the placer/simulator must not change a single decision.

Each case replays a small synthetic workload and hashes every start (time, job, sorted GPU ids),
every preemption and every job's (first start, end, status). The digests were recorded with the
code before the placement fast paths (stranded-GPU table, per-problem host-cost cache, per-edge
pair memo, ...) and re-recorded when the simulator's slowdown became the collective model with
contention (issue 13 step 5: run times, hence every later decision, changed on purpose), and
for the fabric cases when its preemption benefit ratio became 5, then 20 (fewer preemptions, on purpose:
docs/scheduler.md, "Gang-aware preemption"), and when the simulator began to step when a gang's
compact-placement hold ends (2026-12-05: a held gang no longer waits for the next unrelated event), and when NCCL's tree all-reduce over two NVLink domains began to send half its bytes on the
network (2026-12-05: gangs on two hosts with few NICs run faster, so run times changed), and for
fabric-superpod when a gang held for a compact placement stopped preempting spot gangs while it fits
the free GPUs, its benefit-check wait capped by its hold (2026-12-06: its 2 preemptions, and so 4
decisions, fewer), and for both fabric cases when a held gang that cannot start on any placement (too
few GPUs free) began to get its reservation and block later jobs like any other (2026-12-06: a later job
no longer starts in front of it for its whole walltime), and for fabric-nvl72 when greedy began to
spread a gang evenly over the NVL72 racks it spans instead of filling one and putting the rest in the
next (2026-12-06: faster rings, so run times and 6 decisions changed). A change that alters decisions
on purpose must re-record them (run this file's
``_digest`` and paste the new value) and say so; an optimisation must leave them unchanged.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Simulator, gang_workload
from fabric_hpc.topology import open_fabric


class _Recording:
    """A policy wrapper that logs every decision of the wrapped policy."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.placer = inner, inner.name, getattr(inner, "placer", None)
        self.log: list[list] = []

    def hold_until(self, job):  # the simulator wakes the policy when a compact-placement hold ends
        return self.inner.hold_until(job)

    def schedule(self, view):
        d = self.inner.schedule(view)
        self.log += [[view.now, j.id, sorted(p.gpus)] for j, p in d.start]
        self.log += [[view.now, "preempt", v.job_id] for v in d.preempt]
        return d


def _digest(policy, fab_ref: str, jobs: int, load: float, **kw) -> tuple[str, int]:
    fab = open_fabric(fab_ref)
    rec = _Recording(policy)
    work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), load=load, seed=3, **kw)
    res = Simulator(fab, rec, work).run()
    ends = [[r.job.id, r.first_start, r.end, r.status] for r in res.records]
    return hashlib.sha256(json.dumps([rec.log, ends]).encode()).hexdigest(), len(rec.log)


CASES = {
    "fabric-superpod": (fabric_policy, "superpod:sus=2", 250, 1.5, {},
                        "8e31fba8eb00bf5fd31ff6338410bfc0662d4b4383ca59b4dd7862803c370d7a", 250),
    "slurm-superpod": (slurm_policy, "superpod:sus=2", 250, 1.5, {},
                       "f793861e86b7e461f15b8a70600e1686c6833f2da2bf572dbe1bbc95a4dc7768", 250),
    "fabric-nvl72": (fabric_policy, "nvl72:racks=2", 200, 1.3, {"gpus_per_host": 4},
                     "3cf853bb209794dbda8a22ed2c947009fe34eb97902dbe5abf1851848d56f30b", 200),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_replay_decisions_are_pinned(case):
    make, fab_ref, jobs, load, kw, want, decisions = CASES[case]
    got, n = _digest(make(), fab_ref, jobs, load, **kw)
    assert n == decisions
    assert got == want


def test_replay_is_deterministic_within_one_process():
    a = _digest(fabric_policy(), "superpod:sus=2", 120, 1.5)
    b = _digest(fabric_policy(), "superpod:sus=2", 120, 1.5)
    assert a == b
