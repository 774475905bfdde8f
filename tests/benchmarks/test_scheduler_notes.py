"""The policy benchmark's note on a lower GPU utilisation names the right cause: a later last job, or
fewer busy GPU-hours over a shorter span (it used to say "ends later" for a run that ended sooner)."""

from __future__ import annotations

from benchmarks.scheduler.__main__ import _utilisation_note


def _run(makespan_h: float, stretch: float, timeouts: int) -> dict:
    return {"makespan_s": makespan_h * 3600, "mean_stretch": stretch, "timeouts": timeouts}


def test_later_last_job_is_named():
    note = _utilisation_note("t", _run(100, 1.1, 3), _run(120, 1.02, 1))
    assert "ends later (makespan 120.0 h vs 100.0 h)" in note


def test_sooner_end_names_fewer_busy_hours_not_a_later_end():
    note = _utilisation_note("t", _run(110.5, 1.103, 30), _run(89.0, 1.024, 5))
    assert "ends later" not in note
    assert "ends sooner (makespan 89.0 h vs 110.5 h)" in note
    assert "2.4% vs 10.3%" in note and "5 jobs held to their walltime (vs 30)" in note
