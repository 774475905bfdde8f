"""benchmarks.placement.stages runs and reports what it measured (one seed: brute force is exact)."""

from __future__ import annotations

import json

from benchmarks.placement import stages


def test_stages_benchmark_reports_every_solver_against_brute_force(capsys):
    stages.main(["--seeds", "2", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert set(res) == set(stages.REQUESTS)
    placed = [s for per in res.values() for s in per.values() if s["placed"]]
    assert placed and all(s["mean_ratio"] >= 1.0 for s in placed)  # nothing beats the optimum
    assert all(per["cpsat"]["above_optimum"] == 0 for per in res.values())
