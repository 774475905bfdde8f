"""jobscripts/*.sbatch run by bash without a cluster: `srun` and the fabric command are stubs that
log their arguments, so the scripts' own logic (what they run, when, and on which signals) is tested
on every machine (tests/slurm_integration/test_jobscripts.py runs them on a live cluster)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_LOGGER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [[ "$1 $2" == "infer prepare" ]]; then  # write the config prepare would write
  while [[ $# -gt 0 ]]; do [[ "$1" == --config-out ]] && echo '{}' > "$2"; shift; done
fi
"""


def _stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("srun", "fabric"):
        (bin_dir / name).write_text(_LOGGER)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "log")}


def _infer_batch(tmp_path: Path, env: dict[str, str], **extra: str) -> list[str]:
    (tmp_path / "log").unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / "infer_batch.sbatch")], capture_output=True, text=True,
                          env={**env, "ENGINE_CONFIG": str(tmp_path / "engine.json"), "INPUT": "spool",
                               "OUTPUT": "out", "CKPT": "ck", **extra}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "log").read_text().splitlines()


def test_infer_batch_prepares_once_and_a_rerun_keeps_the_pinned_step(tmp_path: Path) -> None:
    """Every submission ran `fabric infer prepare` without --step: a rerun after training saved a
    newer step resumed OUTPUT with the newer weights. A rerun now keeps ENGINE_CONFIG."""
    env = _stubs(tmp_path)
    first = _infer_batch(tmp_path, env)
    assert [line.split()[:3] for line in first] == [["fabric", "infer", "prepare"], ["srun", "--mpi=pmi2", "fabric"],
                                                     ["fabric", "infer", "merge"]]
    assert "--step" not in first[0]
    rerun = _infer_batch(tmp_path, env)
    assert not [line for line in rerun if "infer prepare" in line] and len(rerun) == 2
    pinned = _infer_batch(tmp_path, env, CKPT_STEP="3")  # an explicit step is prepared (and checked by run)
    assert "infer prepare" in pinned[0] and "--step 3" in pinned[0]
