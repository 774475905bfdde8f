"""A spool file replaced by a FIFO after a run (probe 7): `fabric infer merge` hung forever in a blocking
open() of the FIFO before it checked the file's inode. The spool file is opened without blocking and
refused (not a regular file) with exit 5 and a message naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.inference.spool import snapshot_lines, spool_snapshot

from .builders import make_config, random_items, write_spool

FABRIC = Path(sys.executable).parent / "fabric"
ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _fifo_in_place(path: Path) -> None:
    path.rename(path.with_name(path.name + ".moved"))
    os.mkfifo(path)


def test_merge_refuses_a_spool_file_replaced_by_a_fifo(tmp_path: Path) -> None:
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = write_spool(tmp_path, random_items(8, seed=5, max_new=4))
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress", "--chunk-size", "4"]) == 0
    first = sorted(spool.glob("*.jsonl"))[0]
    _fifo_in_place(first)
    try:
        proc = subprocess.run([str(FABRIC), "infer", "merge", str(out)], capture_output=True, text=True,
                              timeout=60, env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail("fabric infer merge hung on a spool file replaced by a FIFO")
    assert proc.returncode == 5, (proc.returncode, proc.stderr)
    assert f"spool file {first} was replaced during the run" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_snapshot_lines_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(4, seed=6), files=1)
    snap = spool_snapshot(spool)
    _fifo_in_place(sorted(spool.glob("*.jsonl"))[0])
    code = ("import json, sys\nfrom fabric_hpc.inference.spool import snapshot_lines\n"
            "try:\n    list(snapshot_lines(json.loads(sys.argv[1])))\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(snap)], capture_output=True, text=True,
                              timeout=30, env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail("snapshot_lines blocked on a FIFO")
    assert proc.stdout.startswith("ExternalError spool file"), (proc.stdout, proc.stderr)
    assert "not a regular file" in proc.stdout


def test_a_spool_file_linked_into_place_is_still_read(tmp_path: Path) -> None:
    """Spool files may be symbolic links to regular files (the snapshot follows them): still read."""
    spool = write_spool(tmp_path, random_items(4, seed=7), files=1)
    real = sorted(spool.glob("*.jsonl"))[0]
    elsewhere = tmp_path / "elsewhere.jsonl"
    real.rename(elsewhere)
    real.symlink_to(elsewhere)
    assert len(list(snapshot_lines(spool_snapshot(spool)))) == 4
