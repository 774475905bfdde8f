"""Messages of `fabric infer` that must not contradict or mislead (new-user probe, run as the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .builders import make_config

REPO = Path(__file__).resolve().parents[2]


def _fabric(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_all_items_dead_lettered_is_an_error_alone(tmp_path: Path) -> None:
    """Before: the summary said `next: fabric infer merge ...`, then an error, exit 3."""
    cfg = make_config(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text(json.dumps({"id": "x", "prompt": [1] * 500, "max_new_tokens": 4}) + "\n")
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                   str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "dead-lettered: nothing ran" in proc.stderr
    assert "next:" not in proc.stdout + proc.stderr, proc.stdout


def test_an_unprepared_pytorch_engine_names_the_cli_command(tmp_path: Path) -> None:
    """Before: the hint named only prepare_pytorch_engine(), a function a CLI user cannot call."""
    cfg = json.loads(make_config(tmp_path).read_text())
    (tmp_path / "empty").mkdir()
    path = tmp_path / "pt.json"
    path.write_text(json.dumps({**cfg, "engine": "pytorch", "engine_dir": str(tmp_path / "empty")}))
    proc = _fabric("infer", "run", "--engine-config", str(path), "--input", str(tmp_path), "--output",
                   str(tmp_path.parent / f"{tmp_path.name}-out"), "--no-progress")
    assert proc.returncode == 3 and "does not exist" in proc.stderr, proc.stderr
    assert "fabric infer prepare" in proc.stderr and "prepare_pytorch_engine()" in proc.stderr, proc.stderr


def test_spool_entries_named_like_work_but_not_read_are_each_reported(tmp_path: Path) -> None:
    """Before: A.JSONL was named (in the empty-spool error) but a FIFO or a directory named x.jsonl
    was skipped without a note, and in a spool with work none of them was mentioned."""
    cfg = make_config(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "dir.jsonl").mkdir()
    os.mkfifo(spool / "fifo.jsonl")
    (spool / "B.JSONL").write_text(json.dumps({"id": "b", "prompt": [1, 2], "max_new_tokens": 2}) + "\n")
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                   str(tmp_path / "out0"), "--no-progress")  # nothing to read: the error says why, per entry
    assert proc.returncode == 3, proc.stderr
    for why in ("'B.JSONL' (the suffix is not lower-case .jsonl)",
                "'dir.jsonl' (a directory, not a regular file)", "'fifo.jsonl' (a FIFO, not a regular file)"):
        assert why in proc.stderr, proc.stderr
    (spool / "a.jsonl").write_text(json.dumps({"id": "a", "prompt": [1, 2], "max_new_tokens": 2}) + "\n")
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                   str(tmp_path / "out1"), "--no-progress")  # work to do: a note, once, naming all three
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "3 spool entries" in notes[0], proc.stderr
    for name in ("'B.JSONL' (the suffix", "'dir.jsonl' (a directory", "'fifo.jsonl' (a FIFO"):
        assert name in notes[0], notes
