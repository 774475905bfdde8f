"""`fabric -v infer run … & kill -TERM $!` wrote the JSON event lines, then an empty line, then the
``cli.error`` event and ``terminated (SIGTERM)``: click's main writes a blank line to stderr for every
KeyboardInterrupt (fabric's SIGTERM unwinds as one) before fabric's own handler runs. docs/events.md lists
every line on stderr that is not JSON; a blank one broke JSON-per-line log pipelines. A real process,
stopped by a real signal: every stderr line is an event or the one documented human line."""

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
def test_a_stopped_command_writes_no_blank_line(tmp_path, sig: signal.Signals, code: int, text: str) -> None:
    spool = write_spool(tmp_path, random_items(3000, seed=9, max_new=20))
    slow = CostModel(base_s=2e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg, out = make_config(tmp_path, cost=slow), tmp_path / "out"
    argv = [sys.executable, "-m", "fabric_hpc.cli", "-v", "infer", "run", "--engine-config", str(cfg),
            "--input", str(spool), "--output", str(out), "--chunk-size", "16", "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "chunks").glob("*.jsonl")):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    lines = err.split("\n")
    assert lines[-1] == "" and lines[-2] == text, lines[-3:]  # the human line last, then nothing
    events = [json.loads(line) for line in lines[:-2]]  # every other line an event: no blank line
    stop = events[-1]
    assert stop["event"] == "cli.error" and stop["exit_code"] == code and stop["error"] == text, stop
