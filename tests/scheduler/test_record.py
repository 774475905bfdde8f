"""A step's input recorded as JSON and replayed gives the same decisions (the agent/simulator twin check)."""

from __future__ import annotations

import json

from fabric_hpc.scheduler import fabric_policy
from fabric_hpc.scheduler.record import decisions_digest, input_from_dict, input_to_dict, replay_cycles
from fabric_hpc.sim import Simulator
from fabric_hpc.sim.synthetic import GangWorkload, gang_workload
from tests.scheduler.helpers import fabric


class _Recording:
    def __init__(self, inner) -> None:
        self.inner, self.name, self.placer, self.cycles = inner, inner.name, inner.placer, []

    def schedule(self, view):
        d = self.inner.schedule(view)
        self.cycles.append(json.loads(json.dumps({"input": input_to_dict(view), "decisions": decisions_digest(d)})))
        return d


def test_recorded_simulator_steps_replay_to_the_same_decisions():
    fab = fabric(4, 4, gpus=8)  # 128 GPUs
    jobs = gang_workload(GangWorkload(jobs=150, load=1.4, seed=11, cluster_gpus=len(fab.gpus)))
    rec = _Recording(fabric_policy())
    res = Simulator(fab, rec, jobs).run()
    assert sum(r.preemptions for r in res.records) >= 1 and len(rec.cycles) > 50
    assert any(not c["input"]["backfill"] for c in rec.cycles)  # both pass kinds were recorded
    assert replay_cycles(rec.cycles, fab, fabric_policy()) == []
    assert all(c["input"]["shares"] is None for c in rec.cycles)  # the simulator: configured shares
    view = input_from_dict(fab, rec.cycles[-1]["input"] | {"shares": {"b": 7}})
    assert view.shares == {"b": 7} and input_to_dict(view)["shares"] == {"b": 7}
    bad = json.loads(json.dumps(rec.cycles[-1]))
    bad["decisions"]["start"] = [["nope", []]]
    assert replay_cycles([bad], fab, fabric_policy())[0]["recorded"]["start"] == [["nope", []]]


def test_step_caches_are_bounded_and_do_not_change_decisions():
    from fabric_hpc.scheduler.caches import Memo

    memo = Memo(3)
    for k in range(10):
        memo.put(k, k)
        assert len(memo) <= 3
    fab = fabric(4, 4, gpus=8)
    jobs = gang_workload(GangWorkload(jobs=150, load=1.4, seed=11, cluster_gpus=len(fab.gpus)))
    rec = _Recording(fabric_policy())
    Simulator(fab, rec, jobs).run()
    cold = fabric_policy()
    for cycle in rec.cycles[::7]:  # a policy whose caches are emptied before every step
        cold.caches.clear()
        assert replay_cycles([cycle], fab, cold) == []
    caches, sizes = rec.inner.caches, rec.inner.caches.sizes()
    assert all(sizes[name] <= getattr(caches, name).limit for name in ("compact", "starts", "no_victims"))
    assert sizes["releases"] <= max(len(c["input"]["running"]) for c in rec.cycles)  # one running list
