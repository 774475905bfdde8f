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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
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
