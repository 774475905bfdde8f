"""The TaskProlog reads GPU id lists from the job's environment, which the user sets: only ASCII digits
are ids. `CUDA_VISIBLE_DEVICES=٣` (an Arabic-Indic three, str.isdigit() is true) was exported as the GPU
list `3`, a GPU the job never named; `²` ended the full path in `ValueError: invalid literal for int()`."""

from __future__ import annotations

import pytest

from fabric_hpc.slurm.task_fast import physical_gpus


@pytest.mark.parametrize("raw", ["\u0663", "\u00b2", "0,\u0661", "\uff11", "1\u00b9"])
def test_an_id_that_is_not_ascii_digits_is_skipped(raw: str) -> None:
    visible, physical = physical_gpus({"CUDA_VISIBLE_DEVICES": raw, "SLURM_STEP_GPUS": raw})
    assert all(i == 0 for i in visible) and visible == physical, (visible, physical)
    assert 3 not in visible and 1 not in visible


def test_ascii_ids_are_read() -> None:
    assert physical_gpus({"CUDA_VISIBLE_DEVICES": " 0, 1", "SLURM_STEP_GPUS": "4,5"}) == ([0, 1], [4, 5])
