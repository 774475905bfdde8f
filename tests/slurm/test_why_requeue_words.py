"""`fabric slurm why` on a gang requeued 4 s after its start said "(2.70 GPU-hours since its last
checkpoint)": the number is ``gpu_hours_lost`` (fabric_hpc/scheduler/preempt.py), GPUs x (time since its
start or last checkpoint + the modelled restore, ``restore_s``), as docs/slurm.md defines it, so most of it
was the restart, not work since a checkpoint. The words now say both parts; the model is unchanged."""

from __future__ import annotations

import time
from pathlib import Path

from tests.slurm.test_why_probe_fixes import _why, audit, gang


def test_why_says_the_lost_gpu_hours_include_the_modelled_restart(tmp_path: Path) -> None:
    now = time.time()
    state = audit(tmp_path, ("agent.requeue", now - 30, {"job": 7, "for_job": 9, "gpu_hours_lost": 2.7}))
    text, _ = _why(gang(7), state)
    assert "2.70 GPU-hours lost" in text, text
    assert "since its last checkpoint)" not in text, text
    assert "work since its start or last checkpoint plus the modelled restart" in text, text
    assert "job 9" in text, text
