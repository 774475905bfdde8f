"""`fabric slurm why` of a GPU gang in a job array or a heterogeneous job, submitted without a comment
(``sbatch --array=0-7%2 -N2 --gres=gpu:8``, ``#SBATCH hetjob`` with ``-N2 --gres=gpu:4``): it says why
fabric does not place it (fabric places single jobs only; submit the tasks as separate jobs), as it does
when the comment says fabric. Before: "It is not marked for fabric placement", the same words as a CPU job,
for a gang the plugin marks when submitted alone (seen live on 22.05.8 and 25.11.7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.slurm.test_why_probe_fixes import _why, gang


_ARRAY = "It is a task of job array 531: the fabric agent places no job arrays"


@pytest.mark.parametrize("state, kw, words", [
    ("RUNNING", {"array_job_id": 531}, _ARRAY),
    ("PENDING", {"array_job_id": 531}, _ARRAY),
    ("RUNNING", {"het_job_id": 529}, "It is a component of heterogeneous job 529"),
])
def test_a_grouped_gang_without_a_comment_is_said_why(tmp_path: Path, state: str, kw: dict,
                                                      words: str) -> None:
    running = {"node_list": ("n1", "n2"), "start_time": time.time() - 5} if state == "RUNNING" else {}
    text, _ = _why(gang(532, state=state, comment="", **kw, **running), tmp_path)
    assert words in text and "not marked" not in text, text


def test_a_grouped_cpu_job_is_still_just_not_marked(tmp_path: Path) -> None:
    job = gang(533, state="RUNNING", comment="", gpus_per_node=0, array_job_id=531, node_list=("n1", "n2"))
    text, _ = _why(job, tmp_path)
    assert "not marked for fabric placement" in text, text
