"""A command stopped by SIGTERM or Ctrl-C, a real process and a real signal:

- with ``--json`` it still writes one JSON document on stdout (exit 143 / 130), as every other failure
  does. Before: stdout empty on one rank (vLLM-user probe);
- with ``-v`` every stderr line is a JSON event or the one documented human line. Before: click's main
  wrote a blank line to stderr for every KeyboardInterrupt (fabric's SIGTERM unwinds as one) before
  fabric's own handler ran, which broke JSON-per-line log pipelines (docs/events.md lists every line
  on stderr that is not JSON)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.inference.builders import CostModel, make_config, random_items, write_spool

STOPS = pytest.mark.parametrize("sig, code, text", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                    (signal.SIGINT, 130, "aborted")])


def _stopped_infer_run(tmp_path, sig: signal.Signals, head: list[str],
                       tail: list[str]) -> tuple[int, str, str]:
    """Start ``infer run`` on a slow simulated engine, signal it once it has written a chunk."""
    spool = write_spool(tmp_path, random_items(3000, seed=9, max_new=20))
    slow = CostModel(base_s=2e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg, out = make_config(tmp_path, cost=slow), tmp_path / "out"
    argv = [sys.executable, *head, "infer", "run", "--engine-config", str(cfg), "--input", str(spool),
            "--output", str(out), "--chunk-size", "16", "--no-progress", *tail]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "chunks").glob("*.jsonl")):
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=60)
    return proc.returncode, stdout, err


@STOPS
def test_a_stopped_run_answers_json(tmp_path, sig: signal.Signals, code: int, text: str) -> None:
    head = ["-c", "import sys; from fabric_hpc.cli.main import main; sys.exit(main())"]
    rc, stdout, err = _stopped_infer_run(tmp_path, sig, head, ["--json"])
    assert rc == code, err[-2000:]
    doc = json.loads(stdout)
    assert doc["exit_code"] == code and doc["error"] == text, doc
    assert "Traceback" not in err


@STOPS
def test_a_stopped_command_writes_no_blank_line(tmp_path, sig: signal.Signals, code: int, text: str) -> None:
    rc, _, err = _stopped_infer_run(tmp_path, sig, ["-m", "fabric_hpc.cli", "-v"], [])
    assert rc == code, err[-2000:]
    lines = err.split("\n")
    assert lines[-1] == "" and lines[-2] == text, lines[-3:]  # the human line last, then nothing
    events = [json.loads(line) for line in lines[:-2]]  # every other line an event: no blank line
    stop = events[-1]
    assert stop["event"] == "cli.error" and stop["exit_code"] == code and stop["error"] == text, stop
