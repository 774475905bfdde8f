"""jobscripts/infer_batch.sbatch with TEXTFILE_DIR (docs/metrics.md): the ranks get --textfile-dir,
and after a failed srun the job's .prom files are removed (srun and fabric are logging stubs; a
srun running `bash -c` runs it, as one task on this "node")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_FABRIC = """#!/bin/bash
echo "fabric $*" >> "$STUB_LOG"
"""
_SRUN = """#!/bin/bash
echo "srun $*" >> "$STUB_LOG"
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done   # srun's own options
if [[ "$1" == bash ]]; then exec "$@"; fi
exit "${SRUN_RC:-0}"
"""


def _run(tmp_path: Path, rc: int, textfile_dir: Path | None) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", _SRUN), ("fabric", _FABRIC)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "log").unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "log"),
           "ENGINE_CONFIG": "engine.json", "INPUT": "spool", "OUTPUT": "out", "SRUN_RC": str(rc),
           "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2"}
    env.pop("TEXTFILE_DIR", None)
    if textfile_dir is not None:
        env["TEXTFILE_DIR"] = str(textfile_dir)
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / "infer_batch.sbatch")], capture_output=True,
                          text=True, env=env, timeout=60)
    return proc.returncode, (tmp_path / "log").read_text().splitlines()


def test_textfile_dir_is_passed_to_the_ranks(tmp_path: Path) -> None:
    rc, log = _run(tmp_path, 0, tmp_path / "textfile")
    assert rc == 0
    run = next(line for line in log if "infer run" in line)
    assert run.endswith(f"--textfile-dir {tmp_path / 'textfile'}")
    rc, log = _run(tmp_path, 0, None)
    assert rc == 0 and "--textfile-dir" not in next(line for line in log if "infer run" in line)


def test_a_failed_run_removes_the_jobs_textfiles(tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    for name in ("fabric-infer-77-rank-00000.prom", "fabric-infer-77-rank-00001.prom",
                 "fabric-infer-78-rank-00000.prom", "node.prom"):
        (textfiles / name).write_text("")
    rc, log = _run(tmp_path, 137, textfiles)
    assert rc == 137
    assert sorted(p.name for p in textfiles.iterdir()) == ["fabric-infer-78-rank-00000.prom", "node.prom"]
    assert any(line.startswith("srun --ntasks-per-node=1 --ntasks=2") for line in log)
    assert not any("infer merge" in line for line in log)
