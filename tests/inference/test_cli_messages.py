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
