"""``benchmarks.scheduler.digest``: the decision digest is the same for the same replay and changes
when any recorded field of a job changes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks.scheduler import digest


def test_digest_repeats_and_sees_a_changed_record(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for _ in range(2):
        monkeypatch.setattr("sys.argv", ["digest", "3:1.5", "150"])
        digest.main()
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["digest"] == runs[1]["digest"] and runs[0]["steps"] == runs[1]["steps"] > 0
    assert len(runs[0]["digest"]) == 64

    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.sim import Simulator, gang_workload
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    res = Simulator(fab, fabric_policy(placement="greedy"), gang_workload(jobs=40, cluster_gpus=len(fab.gpus),
                                                                          load=1.5, seed=3)).run()
    base = digest.record_digest(res.records)
    assert digest.record_digest(list(res.records)) == base
    for change in ({"backfilled": not res.records[0].backfilled}, {"hosts": res.records[0].hosts + 1},
                   {"preemptions": res.records[0].preemptions + 1}, {"domains": {"leaf": 99}}):
        changed = [dataclasses.replace(res.records[0], **change), *res.records[1:]]
        assert digest.record_digest(changed) != base


def test_placement_calls_record_and_time(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.scheduler import placement_calls

    out = tmp_path / "calls.npz"
    placement_calls.record("3:1.5", 120, str(out))
    counts = json.loads(capsys.readouterr().out)
    assert counts["place"] > 0 and counts["may_fit"] > 0
    first, again = placement_calls.timed(str(out), 1), placement_calls.timed(str(out), 1)
    assert {k: v["calls"] for k, v in first.items()} == counts
    assert {k: v["digest"] for k, v in first.items()} == {k: v["digest"] for k, v in again.items()}
