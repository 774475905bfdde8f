"""`fabric slurm why` on a dependency that can never be satisfied says which condition failed, in the
terms of its type. Slurm marks a part ``(failed)`` when its condition can no longer be met, which is a
*success* of the job for ``afternotok`` (job_scheduler.c ``_test_job_dependency_common``: afterok is met
when the job completes, afternotok when it ends any other way; seen on 22.05.8 and 25.11.7:
``--dependency=afternotok:6`` after job 6 completed reads ``DependencyNeverSatisfied``,
``afternotok:6(failed)``). Before: "a job it depends on failed, so it can never start" for both."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fabric_hpc.slurm.parse import reason_words
from fabric_hpc.slurm.why import dependency_words
from tests.slurm.test_why_probe_fixes import _why, gang


def test_the_reason_does_not_say_the_job_it_depends_on_failed() -> None:
    words = reason_words("DependencyNeverSatisfied")
    assert "failed" not in words and "can never be satisfied" in words, words
    assert "afternotok" in words and "afterok" in words, words


@pytest.mark.parametrize("dependency, want", [
    ("afternotok:15(failed)", ["job 15 completed successfully, and afternotok waits for it to fail"]),
    ("afterok:12(failed)", ["job 12 did not complete successfully (it failed, was cancelled, timed out or "
                            "lost its node), and afterok waits for its success"]),
    ("afterok:12(unfulfilled),afternotok:13(failed)",
     ["job 13 completed successfully, and afternotok waits for it to fail"]),
    ("afterok:12(failed)?afternotok:13(failed)",
     ["job 12 did not complete successfully (it failed, was cancelled, timed out or lost its node), and "
      "afterok waits for its success", "job 13 completed successfully, and afternotok waits for it to fail"]),
    ("aftercorr:20(failed)", ["a task of job array 20 did not complete successfully, and aftercorr waits "
                              "for the success of the task of the same index"]),
    ("after:9+5(failed)", ["after:9+5 can no longer be met"]),
    ("afterok:12(unfulfilled)", []), ("", []),
])
def test_each_failed_part_is_said_in_the_terms_of_its_type(dependency: str, want: list[str]) -> None:
    assert dependency_words(dependency) == want


@pytest.mark.parametrize("reason", ["DependencyNeverSatisfied", "None"])  # None: 22.05 after an update
def test_why_says_afternotok_failed_because_the_job_succeeded(tmp_path: Path, reason: str) -> None:
    job = gang(16, reason=reason, priority=9, dependency="afternotok:15(failed)", begin_time=time.time() + 60)
    text, _ = _why(job, tmp_path)
    assert "job 15 completed successfully, and afternotok waits for it to fail" in text, text
    assert "depends on failed" not in text, text
    assert "as its dependency can never be satisfied" in text, text
