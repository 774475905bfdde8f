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


def test_a_run_output_inside_a_checkpoint_step_is_refused(tmp_path: Path, capsys) -> None:
    """Before: `fabric infer run --output ck/step-N/results` wrote the run into the committed
    checkpoint (prune then deletes the results with the step)."""
    import numpy as np

    from fabric_hpc.checkpoint import save
    from fabric_hpc.cli.main import main
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    step = tmp_path / "ck" / "step-0000000001"
    before = sorted(p.name for p in step.iterdir())
    cfg = make_config(tmp_path)
    spool = write_spool(tmp_path, random_items(5), files=1)
    code = main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                 str(step / "results"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "inside the checkpoint" in err and str(step) in err, err
    assert sorted(p.name for p in step.iterdir()) == before


def test_prepare_json_names_the_engine_directory_as_its_text_does(tmp_path: Path, capsys) -> None:
    """Before: the text began with the engine directory ("eng: serves …"), --json had no such key."""
    from fabric_hpc.cli.main import main
    from tests.inference.builders import tiny_checkpoint
    root = tiny_checkpoint(tmp_path / "ck", step=3)
    args = ["infer", "prepare", str(tmp_path / "eng"), "--checkpoint", str(root), "--dtype", "float32",
            "--max-batch-size", "4", "--max-input-len", "16", "--max-seq-len", "32", "--max-num-tokens", "64",
            "--config-out", str(tmp_path / "eng.json")]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert doc["engine_dir"] == str(tmp_path / "eng") and text.startswith(f"{doc['engine_dir']}: serves ")
    assert f"{doc['path']} step {doc['step']} ({doc['naming']} names)" in text
