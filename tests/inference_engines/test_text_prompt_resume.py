"""Text prompts across resume, merge and ranks: a run whose prompts are all token ids never needs the
tokenizer; the tokenizer identity is recorded, and checked, only once a text prompt was encoded.

A real tokenizer (tests/inference_engines/test_text_prompts.py's tiny WordLevel one) and the PyTorch
engine on the CPU. "The tokenizers library is not installed" is a ``tokenizers`` that fails to import:
in this process ``sys.modules["tokenizers"] = None`` (what Python does for a blocked import), under
mpiexec a directory first on one rank's PYTHONPATH whose ``tokenizers`` package raises ImportError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import merge_job, run_job
from fabric_hpc.inference.intake import IntakeRejection, parse_item
from tests.inference_engines.test_text_prompts import LINES, REPO, _engine, _spool, save_tokenizer
from tests.real import require_real

pytest.importorskip("tokenizers")

CPU = {"device": "cpu", "stop_at_eos": False}
IDS = [{"id": f"i{k}", "prompt": [5 + k, 6, 7], "max_new_tokens": 2} for k in range(3)]


def _ids_spool(tmp_path: Path) -> Path:
    return _spool(tmp_path, IDS)


def _run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_a_token_only_run_needs_no_tokenizer_to_merge(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _engine(tmp_path)
    out = tmp_path / "out"
    run_job(tmp_path / "engine.json", str(_ids_spool(tmp_path)), out, engine_options=CPU)
    assert _run_json(out)["tokenizer"] is None  # no text prompt was encoded
    (tmp_path / "model" / "tokenizer_config.json").write_text('{"add_bos_token": false}')
    assert merge_job(out)["items"] == 3
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # a login node without the library
    assert merge_job(out)["items"] == 3
    (tmp_path / "model" / "tokenizer.json").unlink()
    assert merge_job(out)["items"] == 3


def test_an_unreadable_tokenizer_fails_no_token_only_run(tmp_path: Path) -> None:
    _engine(tmp_path)
    (tmp_path / "model" / "tokenizer.json").write_text("{not a tokenizer")
    spool = _ids_spool(tmp_path)
    with (spool / "a.jsonl").open("a") as f:
        f.write(json.dumps({"id": "t", "prompt": "w1 w2", "max_new_tokens": 2}) + "\n")
    snap = run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options=CPU)
    assert snap["items_done"] == 3
    dead = [json.loads(x) for x in (tmp_path / "out" / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == 1
    assert "tokenizer.json: not a tokenizer the tokenizers library reads" in dead[0]["reason"]
    assert merge_job(tmp_path / "out")["items"] == 3


def test_merge_without_the_library_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _engine(tmp_path)
    run_job(tmp_path / "engine.json", str(_spool(tmp_path)), tmp_path / "out", engine_options=CPU)
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ConfigError, match="the tokenizers library is not installed on this node") as err:
        merge_job(tmp_path / "out")
    assert "is gone" not in err.value.message and "pip install" in str(err.value.hint)


def _checkpoint_engine(tmp_path: Path, hf_dir: Path) -> None:
    """A PyTorch engine served from a fabric checkpoint (its weights identity is the checkpoint's,
    not the engine directory's files): no tokenizer of its own (docs/inference.md)."""
    from fabric_hpc.checkpoint.interop.hf import import_hf
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    import_hf(hf_dir, tmp_path / "ck", step=7)
    cfg = prepare_pytorch_engine(tmp_path / "model", dtype="float32", checkpoint=tmp_path / "ck",
                                 max_batch_size=4, max_input_len=16, max_seq_len=32, max_num_tokens=64)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))


def test_a_run_without_tokenizer_json_resumes_with_one(tmp_path: Path, hf_dir: Path) -> None:
    _checkpoint_engine(tmp_path, hf_dir)
    spool, out = _spool(tmp_path), tmp_path / "out"
    assert run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)["items_done"] == 1
    assert _run_json(out)["tokenizer"] is None
    save_tokenizer(tmp_path / "model")  # what the dead-letter reason advised
    again = run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)
    assert again["resumed"] == 1 and again["items_done"] == 3
    assert _run_json(out)["tokenizer"] is not None
    assert merge_job(out)["items"] == 4


def test_a_resume_refuses_another_tokenizer_only_after_text(tmp_path: Path, hf_dir: Path) -> None:
    _checkpoint_engine(tmp_path, hf_dir)
    save_tokenizer(tmp_path / "model")
    spool, out = _ids_spool(tmp_path), tmp_path / "out"
    run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)
    (tmp_path / "model" / "tokenizer_config.json").write_text('{"add_bos_token": false}')
    assert run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)["resumed"] == 3
    with (spool / "a.jsonl").open("a") as f:
        f.write(json.dumps({"id": "t", "prompt": "w1 w2", "max_new_tokens": 2}) + "\n")
    assert run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)["items_done"] == 1
    (tmp_path / "model" / "tokenizer_config.json").unlink()
    with pytest.raises(ConfigError, match=r"encoded text prompts with tokenizer sha256 \w{12}; the engine's "
                                          r"model directory now has tokenizer sha256 \w{12}: cannot resume"):
        run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)


def test_a_pre_feature_run_refuses_text_and_merge_agrees(tmp_path: Path) -> None:
    _engine(tmp_path)
    spool, out = _ids_spool(tmp_path), tmp_path / "out"
    run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)
    doc = _run_json(out)
    del doc["tokenizer"]  # run.json as the release before text prompts wrote it
    (out / "run.json").write_text(json.dumps(doc))
    with (spool / "a.jsonl").open("a") as f:
        f.write(json.dumps({"id": "t", "prompt": "w1 w2", "max_new_tokens": 2}) + "\n")
    again = run_job(tmp_path / "engine.json", str(spool), out, engine_options=CPU)
    assert again["items_done"] == 0 and again["dead_letter"] == 1
    dead = json.loads((out / "dead-letter.jsonl").read_text())
    assert "begun by a fabric release that read no text prompts" in dead["reason"]
    merged = merge_job(out)
    assert merged["items"] == 3 and merged["without_input"] == 0


def test_an_openai_line_without_max_tokens_names_max_tokens() -> None:
    line = '{"custom_id": "t", "url": "/v1/completions", "body": {"prompt": [1, 2]}}'
    with pytest.raises(IntakeRejection, match=r"missing required keys \['max_tokens'\]"):
        parse_item(line)
    with pytest.raises(IntakeRejection, match=r"missing required keys \['prompt'\]"):
        parse_item('{"custom_id": "t", "url": "/v1/completions", "body": {"max_tokens": 2}}')


@pytest.mark.mpi
@pytest.mark.slow
def test_ranks_with_different_tokenizers_are_refused(tmp_path: Path) -> None:
    """Rank 1 runs where the tokenizers library cannot be imported: before, it dead-lettered the
    text items rank 0 accepted, so the two ranks shared out different item lists."""
    mpiexec, fabric = Path(sys.executable).parent / "mpiexec", Path(sys.executable).parent / "fabric"
    require_real("mpi", mpiexec.exists() and fabric.exists(), f"{mpiexec} or {fabric} missing")
    _engine(tmp_path)
    spool = _spool(tmp_path)
    blocked = tmp_path / "blocked" / "tokenizers"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError(\"No module named 'tokenizers'\")\n")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    args = [str(fabric), "infer", "run", "--engine-config", str(tmp_path / "engine.json"),
            "--input", str(spool), "--output", str(tmp_path / "out"), "--no-progress"]
    cmd = [str(mpiexec), "-n", "1", *args, ":", "-n", "1", "-env", "PYTHONPATH",
           os.pathsep.join([str(blocked.parent), path]), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "ranks encode text prompts differently" in errors[0], proc.stderr[-2000:]
    assert "rank 1" in errors[0] and "the tokenizers library is not installed" in errors[0]
