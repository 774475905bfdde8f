"""infer_batch.sbatch run by bash with stub `fabric`/`srun`: a SIGUSR1 (sbatch --signal=B:USR1@N)
that comes while `fabric infer prepare` runs killed the batch shell (FAILED 0:10, not a word). Now no
rank is started and the script exits 143 saying to resubmit (the live case, the ranks running, is in
tests/slurm_integration/test_jobscripts_user_env_live.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_FABRIC = """#!/bin/bash
echo "fabric $*" >> "$STUB_LOG"
if [[ "$1 $2" == "infer prepare" ]]; then sleep 2; fi
"""
_SRUN = """#!/bin/bash
echo "srun $*" >> "$STUB_LOG"
"""


def test_a_usr1_during_prepare_starts_no_rank_and_exits_143(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("fabric", _FABRIC), ("srun", _SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log), "CKPT": "ck",
           "ENGINE_CONFIG": str(tmp_path / "engine.json"), "INPUT": "spool", "OUTPUT": "out"}
    proc = subprocess.Popen(["bash", str(REPO / "jobscripts" / "infer_batch.sbatch")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (log.is_file() and "infer prepare" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err  # before: -10, the shell killed by SIGUSR1
    assert "not started (SIGUSR1 before the ranks); resubmit with the same OUTPUT" in err, err
    assert "srun" not in log.read_text()
