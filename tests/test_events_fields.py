"""docs/events.md lists each event's fields, not only its name (SRE report: ``infer.merged`` also
carried order, without_input, without_input_ids, dead_letter, dead_letter_with_result, other_input;
``infer.metrics`` budget, engine_steps, padded_prefill_tokens, wall_s, gpu_sm_util and the *_per_s
rates, hidden behind "…"). A real run, merge, preempted save and failed command emit their events;
every field of every documented event among them must be named (in backticks) in its row."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[1]
ENVELOPE = {"ts", "event"}
#: the events this file must see (the SRE report's, and the ones each step exists for)
MUST = {"infer.merged", "infer.metrics", "infer.start", "infer.finish", "infer.spool_ignored", "dead_letter",
        "checkpoint.saved", "checkpoint.preempted_save", "cli.error"}


def documented_fields() -> dict[str, tuple[str, set[str]]]:
    """event name -> (its fields cell, the names in backticks in it)."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in (REPO / "docs" / "events.md").read_text().splitlines():
        match = re.match(r"^\| `([a-z_.]+)` \| (.*?) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2), set(re.findall(r"`([^`]+)`", match.group(2))))
    return rows


def _scenario(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Events a run, a merge, a preempted save and a failed command emit, plus the files' records."""
    from fabric_hpc.checkpoint.preemption import PreemptionHandler
    from fabric_hpc.checkpoint.writer import save
    from fabric_hpc.cli.main import main
    from fabric_hpc.inference.runner import merge_job, run_job
    from fabric_hpc.inference.simulated import VirtualClock
    from tests.inference.builders import make_config, random_items, write_spool

    spool = write_spool(tmp, random_items(20, max_new=4), files=2, extra_lines=["{broken"])
    (spool / "late.JSONL").write_text("")
    textfiles = tmp / "textfile"
    textfiles.mkdir()
    out = tmp / "out"
    run_job(make_config(tmp), str(spool), out, engine_options={"clock": VirtualClock()}, metrics_interval=0.0,
            textfile_dir=textfiles)
    merge_job(out)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    handler = PreemptionHandler.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.wait(5)
        handler.save_and_requeue(lambda: save(tmp / "ckpt", {"a": np.ones(2)}, step=1), requeue=False)
    finally:
        handler.uninstall()
    assert main(["infer", "merge", str(tmp / "nowhere")]) != 0
    records = [json.loads(line) for line in (out / "metrics" / "rank-00000.jsonl").read_text().splitlines()]
    return records + [json.loads(line) for line in (out / "dead-letter.jsonl").read_text().splitlines()]


def test_every_emitted_field_is_in_the_catalogue(tmp_path: Path, events,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen = events + _scenario(tmp_path, monkeypatch)
    doc = documented_fields()
    assert MUST <= {e["event"] for e in seen}, sorted(MUST - {e["event"] for e in seen})
    missing: dict[str, set[str]] = {}
    for event in seen:
        if event["event"] in doc:
            missing.setdefault(event["event"], set()).update(set(event) - ENVELOPE - doc[event["event"]][1])
    missing = {name: fields for name, fields in missing.items() if fields}
    assert not missing, f"fields emitted but not in docs/events.md: {missing}"


@pytest.mark.parametrize("name", sorted(MUST))
def test_a_checked_row_names_its_fields_in_full(name: str) -> None:
    """No "…" standing for fields the row leaves out (infer.metrics ended in one)."""
    cell, names = documented_fields()[name]
    assert "…" not in cell and "..." not in cell and names, cell


def test_the_catalogue_names_no_field_these_events_never_carry(tmp_path: Path, events,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The other way round, for the fields of infer.merged and infer.metrics: each name in their
    rows is an emitted field (or a key of one, as the stages of ``queue_depths``), or a value."""
    seen = events + _scenario(tmp_path, monkeypatch)
    doc = documented_fields()
    values = {"infer.merged": {"results.jsonl", "input", "completion", "merge_outputs", "merge --input"},
              "infer.metrics": set()}
    for name, allowed in values.items():
        emitted: set[str] = set()
        for event in (e for e in seen if e["event"] == name):
            emitted |= set(event) | {k for v in event.values() if isinstance(v, dict) for k in v}
        extra = doc[name][1] - emitted - allowed
        assert not extra, f"{name}: in docs/events.md, never emitted: {sorted(extra)}"
