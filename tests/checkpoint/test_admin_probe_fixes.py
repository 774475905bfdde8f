"""Fixes from a cluster-admin probe of ``fabric ckpt`` (real files, real commands through main())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from tests.checkpoint.builders import run_cli


def _steps(root: Path, steps: range | list[int]) -> Path:
    for s in steps:
        save(root, {"model": {"w": np.full(4, s, np.float32)}, "b": np.ones(2)}, step=s)
    return root


def test_restore_rerun_with_a_0d_tensor_keeps_the_same_reshard(tmp_path: Path, capsys) -> None:
    save(tmp_path / "ck", {"optim": {"step": np.int64(5)}, "w": np.ones(3, np.float32)}, step=1)
    args = ("ckpt", "restore", str(tmp_path / "ck"), "--to-world-size", "2", "--out", str(tmp_path / "o"))
    assert run_cli(capsys, *args)[0] == 0
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "already holds this reshard" in out, err


_EXPORT = """
import sys
import fabric_hpc.checkpoint.hdf5 as h
if sys.argv[3] == "no-precheck":  # the disk filling up while writing (another job's files)
    h.check_free_space = lambda *a: None
from fabric_hpc.cli.main import main
sys.exit(main(["ckpt", "export", sys.argv[1], "--h5", sys.argv[2]]))
"""


@pytest.mark.parametrize("how", ["precheck", "no-precheck"])
def test_export_onto_a_full_disk_is_one_line_exit_5_and_no_crash(tmp_path: Path, how: str) -> None:
    import shutil
    import subprocess
    import sys
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare -m to mount a small tmpfs")
    save(tmp_path / "big", {"l": {str(i): {"w": np.ones((256, 1024), np.float32), "b": np.ones(7)}
                                  for i in range(12)}}, step=1)
    full = tmp_path / "full"
    full.mkdir()
    (tmp_path / "export.py").write_text(_EXPORT)
    root = Path(__file__).resolve().parents[2]
    script = (f"mount -t tmpfs -o size=1m tmpfs {full} || exit 99; "
              f"PYTHONPATH={root} {sys.executable} {tmp_path / 'export.py'} {tmp_path / 'big'} {full / 'x.h5'} {how}; "
              f"rc=$?; ls -A {full}; exit $rc")
    r = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=120)
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "the disk is full" in r.stderr and "Traceback" not in r.stderr and "RuntimeError" not in r.stderr
    assert r.stderr.startswith("error: cannot write file") and str(full / "x.h5") in r.stderr
    assert r.stdout.strip() == ""  # no temporary file left on the full filesystem
