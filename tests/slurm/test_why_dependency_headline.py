"""`fabric slurm why` of a gang waiting on a dependency whose Slurm reason reads ``None`` (every update of
the job resets it, the agent's deferral renewals included, until Slurm's next pass sets it again: seen on
22.05.8, ``squeue --json`` ``state_reason: None`` while ``scontrol`` showed ``DependencyNeverSatisfied``)
begins with the dependency, not "is pending: no reason recorded" (the rest of its answer already spoke
of the dependency)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.slurm.test_why_probe_fixes import _why, gang


@pytest.mark.parametrize("dependency, words", [
    ("afterok:494(failed)", "is pending: its dependency can never be satisfied"),
    ("afterok:494(unfulfilled)", "is pending: it waits for another job it depends on"),
    # review: an any-of list with one part failed can still be met by the other
    ("afterok:494(failed)?afterok:496(unfulfilled)", "is pending: it waits for another job it depends on"),
])
def test_the_headline_names_the_dependency_when_slurm_reset_the_reason(tmp_path: Path, dependency: str,
                                                                       words: str) -> None:
    job = gang(495, reason="None", priority=9, dependency=dependency, begin_time=time.time() + 60)
    text, _ = _why(job, tmp_path)
    assert words in text and "no reason recorded" not in text, text


def test_a_pending_job_without_a_reason_or_dependency_still_says_so(tmp_path: Path) -> None:
    text, _ = _why(gang(7, reason="None", priority=9, begin_time=time.time() + 60), tmp_path)
    assert "is pending: no reason recorded" in text, text
