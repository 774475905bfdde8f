"""The jobscripts' training workers survive a SIGUSR1 that arrives while they are still starting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("module", ["fabric_hpc.slurm.train_demo", "fabric_hpc.inference.engines.train_tiny"])
def test_an_early_sigusr1_is_kept_not_fatal(tmp_path, module):
    """Slurm's --signal=B:USR1 may come right after the start (a short time limit, a preemption):
    the worker installs its handler before its imports (torch takes seconds), so the signal asks
    for a checkpoint instead of killing the rank with the default action."""
    proc = subprocess.Popen([sys.executable, "-m", module, "--ckpt-dir", str(tmp_path / "ck"), "--steps", "100000",
                             "--step-seconds", "0.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the interpreter is up; numpy/torch/fabric_hpc still importing (or just done)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    report = json.loads(out.strip().splitlines()[-1])
    assert report["signalled"] is True and report["step"] < 100000
