"""Fixes from a second ML-engineer probe of ``fabric infer`` (real runs, killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fabric_hpc.inference import CostModel
from fabric_hpc.inference.outputs import job_status
from tests.inference.builders import make_config, random_items, write_spool

SLOW = CostModel(base_s=5e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)


def test_a_killed_run_has_nothing_in_flight(tmp_path: Path, capsys) -> None:
    """Before: after `kill -9` status said e.g. "928 items done (journalled), 913 read, 97 in flight"
    for a run that had stopped: the ranks' last snapshots, a second old when the run died, were
    counted as work in progress. A stopped run holds nothing in flight (a resume reads it again)."""
    cfg = make_config(tmp_path, cost=SLOW)
    spool = write_spool(tmp_path, random_items(3000, seed=4), files=1)
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "fabric_hpc.cli", "infer", "run", "--engine-config", str(cfg),
           "--input", str(spool), "--output", str(out), "--no-progress", "--chunk-size", "8"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until items are committed and a snapshot reported them read
            if (out / "run.json").is_file() and (st := job_status(out))["done"] >= 100 and st["items_read"]:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    st = job_status(out)
    assert st["phase"] == "stopped" and not st["running"] and st["done"] < 3000, st
    assert st["in_flight"] == 0, st
    from fabric_hpc.cli.main import main
    assert main(["infer", "status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["in_flight"] == 0
    assert main(["infer", "status", str(out)]) == 0
    assert "stopped" in (text := capsys.readouterr().out) and ", 0 in flight" in text
