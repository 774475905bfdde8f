"""The harness drives the PyTorch engine end to end: ``run_job`` (what ``fabric infer run``
calls) over a spool of ragged items, merged exactly once, every item's tokens equal to the
engine run on that item alone."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.inference import (
    EngineConfigError,
    EngineRequest,
    build_engine,
    load_engine_config,
    merge_job,
    run_job,
)
from fabric_hpc.inference.engines import prepare_pytorch_engine
from fabric_hpc.inference.testing import drain


def test_run_job_with_pytorch_engine(tmp_path: Path) -> None:
    cfg: dict[str, Any] = prepare_pytorch_engine(
        tmp_path / "model", preset="tiny", dtype="float32", seed=9, max_batch_size=8,
        max_input_len=40, max_seq_len=64, max_num_tokens=128)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    rng = random.Random(2)
    items = [{"id": f"i{k}", "prompt": [rng.randrange(3, 1024) for _ in range(rng.randint(1, 40))],
              "max_new_tokens": rng.randint(1, 16)} for k in range(24)]
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    snap = run_job(tmp_path / "engine.json", str(spool), tmp_path / "out",
                   engine_options={"device": "cpu", "stop_at_eos": False})
    assert snap["items_done"] == 24
    assert snap["output_tokens"] == sum(it["max_new_tokens"] for it in items)
    assert snap["padding_waste"] < 0.25  # 24 items, lanes still learning the lengths
    merged = merge_job(tmp_path / "out")
    assert merged["items"] == 24
    got = {}
    for line in Path(merged["results"]).read_text().splitlines():
        rec = json.loads(line)
        got[rec["id"]] = rec["tokens"]
    engine = build_engine(load_engine_config(cfg), device="cpu", stop_at_eos=False)
    for it in items:
        engine.add([EngineRequest(it["id"], it["prompt"], it["max_new_tokens"])])
        assert drain(engine)[0].tokens == got[it["id"]], it["id"]
    engine.close()


def test_rerun_resumes_without_recomputing(tmp_path: Path) -> None:
    cfg = prepare_pytorch_engine(tmp_path / "model", preset="tiny", dtype="float32",
                                 max_batch_size=4, max_input_len=16, max_seq_len=32,
                                 max_num_tokens=64)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text("".join(json.dumps(
        {"id": f"x{k}", "prompt": [5 + k, 6], "max_new_tokens": 3}) + "\n" for k in range(10)))
    first = run_job(cfg, str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    again = run_job(cfg, str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    assert first["items_done"] == 10 and again["resumed"] == 10 and again["items_done"] == 0
    with pytest.raises(EngineConfigError, match="max_seq_len: config says 31"):
        run_job({**cfg, "max_seq_len": 31}, str(spool), tmp_path / "out",
                engine_options={"device": "cpu"})


def test_an_item_outside_the_vocabulary_is_a_dead_letter_not_a_failed_run(tmp_path: Path) -> None:
    """The PyTorch engine refuses prompt token ids at or above its vocab_size at ``add``: one such
    item used to fail the whole run (exit 3 on every rerun too). Intake now knows the engine's
    vocabulary (``KnowsVocabulary``) and dead-letters it like an item too long; merge expects the
    same accepted ids (run.json records the vocabulary)."""
    cfg = prepare_pytorch_engine(tmp_path / "model", preset="tiny", dtype="float32", max_batch_size=4,
                                 max_input_len=16, max_seq_len=32, max_num_tokens=64)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    items = [{"id": f"i{k}", "prompt": [3 + k, 5], "max_new_tokens": 2} for k in range(6)]
    items.insert(3, {"id": "oov", "prompt": [7, 1024], "max_new_tokens": 2})  # tiny's vocab: 0..1023
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    snap = run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    assert snap["items_done"] == 6
    dead = [json.loads(line) for line in (tmp_path / "out" / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == 1 and dead[0]["line"] == 4
    assert "token id 1024 is outside the engine's vocabulary (0..1023)" in dead[0]["reason"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["vocab_size"] == 1024
    assert merge_job(tmp_path / "out")["items"] == 6
