"""A command stopped by SIGTERM or Ctrl-C with ``--json`` still writes one JSON document on stdout
(exit 143 / 130), as every other failure does. Before: stdout empty on one rank (vLLM-user probe)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.inference.builders import CostModel, make_config, random_items, write_spool


@pytest.mark.parametrize("sig, code, text", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "aborted")])
def test_a_stopped_run_answers_json(tmp_path, sig: signal.Signals, code: int, text: str) -> None:
    spool = write_spool(tmp_path, random_items(3000, seed=9, max_new=20))
    slow = CostModel(base_s=2e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg, out = make_config(tmp_path, cost=slow), tmp_path / "out"
    argv = [sys.executable, "-c", "import sys; from fabric_hpc.cli.main import main; sys.exit(main())",
            "infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
            "--chunk-size", "16", "--no-progress", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "chunks").glob("*.jsonl")):
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    doc = json.loads(stdout)
    assert doc["exit_code"] == code and doc["error"] == text, doc
    assert "Traceback" not in err
