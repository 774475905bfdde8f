"""Text prompts: the engine's model directory's tokenizer.json encodes them, results carry ``text``.

A real tokenizer, built here with the tokenizers library (a WordLevel model over the tiny preset's
1024 ids, BOS added by its post-processor, as Llama's tokenizer.json does), and the PyTorch engine
on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import EngineRequest, build_engine, load_engine_config, merge_job, run_job
from fabric_hpc.inference.engines import prepare_pytorch_engine
from fabric_hpc.inference.intake import MAX_TEXT_BYTES, IntakeRejection, item_digest, parse_item
from fabric_hpc.inference.testing import drain
from fabric_hpc.inference.tokenizer import PromptTokenizer
from tests.real import require_real

tokenizers = pytest.importorskip("tokenizers")

WORDS = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(1021)]  # ids 0..1023: the tiny vocabulary
REPO = Path(__file__).resolve().parents[2]


def save_tokenizer(directory: Path, **config: Any) -> Any:
    """A WordLevel tokenizer.json (BOS <s> added by the post-processor) in ``directory``, and
    ``config`` as its tokenizer_config.json where given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(str(directory / "tokenizer.json"))
    if config:
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return tok


def test_encoding_follows_the_tokenizer_and_its_config(tmp_path: Path) -> None:
    save_tokenizer(tmp_path)
    tok = PromptTokenizer(tmp_path)
    assert tok.available and tok.encode("w5 w6") == [1, 8, 9]  # BOS from the post-processor
    assert tok.decode([1, 8, 9, 2]) == "w5 w6"  # special tokens skipped
    save_tokenizer(tmp_path, add_bos_token=False, add_eos_token=True, bos_token="<s>",
                   eos_token={"content": "</s>", "special": True})
    assert PromptTokenizer(tmp_path).encode("w5 w6") == [8, 9, 2]
    (tmp_path / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(IntakeRejection, match="tokenizer.json: not a tokenizer the tokenizers library reads"):
        PromptTokenizer(tmp_path).encode("w5")


def test_a_deep_or_odd_tokenizer_config_is_a_reason_not_a_traceback_or_hang(tmp_path: Path) -> None:
    """tokenizer_config.json nested past Python's recursion limit raised RecursionError: now the text
    item's dead-letter reason; a FIFO there is no config (not a read that blocks)."""
    import os

    save_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(IntakeRejection, match="tokenizer_config.json: not readable JSON"):
        PromptTokenizer(tmp_path).encode("w5")
    (tmp_path / "tokenizer_config.json").unlink()
    os.mkfifo(tmp_path / "tokenizer_config.json")
    assert PromptTokenizer(tmp_path).encode("w5") == [1, 8]  # the post-processor's BOS, then w5


def test_without_a_tokenizer_a_text_prompt_names_the_missing_file(tmp_path: Path) -> None:
    tok = PromptTokenizer(tmp_path)
    assert not tok.available
    with pytest.raises(IntakeRejection, match=f"{tmp_path.name}' has no tokenizer.json.*list of token ids"):
        parse_item('{"id": "t", "prompt": "w1 w2", "max_new_tokens": 2}', tokenizer=tok)


@pytest.mark.parametrize(("line", "reason"), [
    ('{"id": "t", "prompt": "", "max_new_tokens": 2}', "prompt is empty text"),
    ('{"id": "t", "prompt": "w1 \\ud800", "max_new_tokens": 2}',
     "prompt is not valid Unicode: a lone surrogate"),
    (json.dumps({"id": "t", "prompt": "\u00e9" * (MAX_TEXT_BYTES // 2 + 1), "max_new_tokens": 2}),
     f"prompt text is {MAX_TEXT_BYTES + 2:,} bytes of UTF-8; the limit is {MAX_TEXT_BYTES:,}"),
    (json.dumps({"id": "t", "prompt": " ".join(["w1"] * 60), "max_new_tokens": 2}),
     "prompt has 61 tokens; engine max_input_len is 48"),
    ('{"id": "t", "prompt": "   ", "max_new_tokens": 2}', None),  # BOS alone: a prompt of one token
    ('{"custom_id": "t", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
     "url '/v1/completions'"),
    ('{"custom_id": "t", "url": "/v1/chat/completions", "body": {}}',  # no method: POST, as it is taken
     r"\(got 'POST', '/v1/chat/completions'\)"),
    ('{"custom_id": "t", "url": "/v1/completions", "body": {"prompt": "w1", "max_tokens": 2, '
     '"temperature": 0.7}}', r"body keys \['temperature'\] are not supported"),
    ('{"custom_id": "t", "url": "/v1/completions", "body": {"prompt": "w1"}}', "missing required keys"),
    ('{"custom_id": 7, "url": "/v1/completions", "body": {"prompt": "w1", "max_tokens": 2}}',
     "custom_id must be a non-empty string"),
    ('{"id": "t", "prompt": ["w1", "w2"], "max_new_tokens": 2}', "prompt is a list of texts"),
])
def test_text_prompt_bounds(tmp_path: Path, line: str, reason: str | None) -> None:
    from fabric_hpc.inference import EngineLimits

    save_tokenizer(tmp_path)
    limits = EngineLimits(8, 256, 48, 96, 768)
    if reason is None:
        assert parse_item(line, limits, 1024, PromptTokenizer(tmp_path)).prompt == [1]
        return
    with pytest.raises(IntakeRejection, match=reason):
        parse_item(line, limits, 1024, PromptTokenizer(tmp_path))


def test_a_text_items_digest_is_of_its_text(tmp_path: Path) -> None:
    save_tokenizer(tmp_path)
    tok = PromptTokenizer(tmp_path)
    text = parse_item('{"id": "a", "prompt": "w5 w6", "max_new_tokens": 3}', tokenizer=tok)
    openai = parse_item('{"custom_id": "a", "method": "POST", "url": "/v1/completions", '
                        '"body": {"model": "m", "prompt": "w5 w6", "max_tokens": 3}}', tokenizer=tok)
    ids = parse_item('{"id": "a", "prompt": [1, 8, 9], "max_new_tokens": 3}', tokenizer=tok)
    assert text.prompt == ids.prompt == openai.prompt and openai.id == "a"
    assert item_digest(text) == item_digest(openai) == "919ee7504044c05f"  # of the text: every run, rank
    assert item_digest(text) != item_digest(ids)
    other = parse_item('{"id": "a", "prompt": "w5  w6", "max_new_tokens": 3}', tokenizer=tok)
    assert other.prompt == text.prompt and item_digest(other) != item_digest(text)


def _engine(tmp_path: Path, tokenizer: bool = True) -> dict[str, Any]:
    cfg = prepare_pytorch_engine(tmp_path / "model", preset="tiny", dtype="float32", seed=4, max_batch_size=4,
                                 max_input_len=16, max_seq_len=32, max_num_tokens=64)
    if tokenizer:
        save_tokenizer(tmp_path / "model")
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    return cfg


LINES = [
    {"id": "t1", "prompt": "w1 w2 w3", "max_new_tokens": 4},
    {"id": "ids", "prompt": [5, 6, 7], "max_new_tokens": 3},
    {"custom_id": "oa", "method": "POST", "url": "/v1/completions",
     "body": {"model": "tiny", "prompt": "w9 w10", "max_tokens": 5}},
    {"id": "long", "prompt": " ".join(["w3"] * 20), "max_new_tokens": 2},  # 21 tokens > max_input_len 16
    {"id": "t2", "prompt": "w100 \u00e9t\u00e9 w7", "max_new_tokens": 2,
     "priority": 1},  # unknown word: <unk>
]


def _spool(tmp_path: Path, lines: list[dict] | None = None) -> Path:
    """A spool of ``lines`` (default: LINES) in one file."""
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = LINES if lines is None else lines
    (spool / "a.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return spool


def test_text_prompts_run_merge_and_resume(tmp_path: Path) -> None:
    cfg = _engine(tmp_path)
    spool = _spool(tmp_path)
    opts = {"device": "cpu", "stop_at_eos": False}
    snap = run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options=opts)
    assert snap["items_done"] == 4
    run_doc = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_doc["tokenizer"] == PromptTokenizer(tmp_path / "model").identity
    dead = [json.loads(x) for x in (tmp_path / "out" / "dead-letter.jsonl").read_text().splitlines()]
    assert [d["line"] for d in dead] == [4] and "prompt has 21 tokens" in dead[0]["reason"]
    merged = merge_job(tmp_path / "out")
    assert merged["items"] == 4 and merged["dead_letter_with_result"] == 0
    got = {r["id"]: r for r in map(json.loads, Path(merged["results"]).read_text().splitlines())}
    assert "text" not in got["ids"] and got["t2"]["priority"] == 1
    tok = PromptTokenizer(tmp_path / "model")
    engine = build_engine(load_engine_config(cfg), device="cpu", stop_at_eos=False)
    for rid, text, new in (("t1", "w1 w2 w3", 4), ("oa", "w9 w10", 5), ("t2", "w100 \u00e9t\u00e9 w7", 2)):
        prompt = tok.encode(text)
        assert prompt[0] == 1 and (rid != "t2" or prompt[-2:] == [0, 10])
        engine.add([EngineRequest(rid, prompt, new)])
        tokens = drain(engine)[0].tokens
        assert got[rid]["tokens"] == tokens and got[rid]["text"] == tok.decode(tokens), rid
        assert got[rid]["metrics"]["num_prompt_tokens"] == len(prompt)
    engine.close()
    again = run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options=opts)
    assert again["resumed"] == 4 and again["items_done"] == 0  # the text digests matched


def test_a_changed_text_prompt_is_refused_on_resume(tmp_path: Path) -> None:
    from fabric_hpc.inference.intake import InputChanged

    _engine(tmp_path)
    spool = _spool(tmp_path)
    run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    (spool / "a.jsonl").write_text((spool / "a.jsonl").read_text().replace("w1 w2 w3", "w1 w2 w4"))
    with pytest.raises(InputChanged, match="item 't1'"):
        run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options={"device": "cpu"})


def test_another_tokenizer_is_refused_on_resume_and_merge(tmp_path: Path) -> None:
    _engine(tmp_path)
    spool = _spool(tmp_path)
    run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    (tmp_path / "model" / "tokenizer_config.json").write_text('{"add_bos_token": false, "bos_token": "<s>"}')
    with pytest.raises(ConfigError, match=r"encoded text prompts with tokenizer sha256 \w{12}; the engine's "
                                          r"model directory now has tokenizer sha256 \w{12}: cannot resume"):
        run_job(tmp_path / "engine.json", str(spool), tmp_path / "out", engine_options={"device": "cpu"})
    with pytest.raises(ConfigError, match=r"the run encoded text prompts with tokenizer sha256 \w{12}; the "
                                          r"engine's model directory now has tokenizer sha256 \w{12}: merge "
                                          r"cannot tell which text items it accepted"):
        merge_job(tmp_path / "out")
    (tmp_path / "model" / "tokenizer_config.json").unlink()
    (tmp_path / "model" / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match="model' has no tokenizer.json: merge cannot tell"):
        merge_job(tmp_path / "out")


def test_without_tokenizer_json_text_items_are_dead_letters(tmp_path: Path) -> None:
    _engine(tmp_path, tokenizer=False)
    snap = run_job(tmp_path / "engine.json", str(_spool(tmp_path)), tmp_path / "out",
                   engine_options={"device": "cpu"})
    assert snap["items_done"] == 1
    dead = [json.loads(x) for x in (tmp_path / "out" / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == 4 and all("model' has no tokenizer.json" in d["reason"] for d in dead)
    assert merge_job(tmp_path / "out")["items"] == 1


@pytest.mark.mpi
@pytest.mark.slow
def test_text_prompts_under_mpiexec(tmp_path: Path) -> None:
    """Two ranks each encode the whole snapshot to cost and shard it; every text item runs once."""
    mpiexec, fabric = Path(sys.executable).parent / "mpiexec", Path(sys.executable).parent / "fabric"
    require_real("mpi", mpiexec.exists() and fabric.exists(), f"{mpiexec} or {fabric} missing")
    _engine(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text("".join(json.dumps(
        {"id": f"t{k}", "prompt": " ".join(f"w{k + j}" for j in range(1 + k % 9)), "max_new_tokens": 3})
        + "\n" for k in range(24)))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [str(mpiexec), "-n", "2", str(fabric), "infer", "run", "--engine-config",
           str(tmp_path / "engine.json"), "--input", str(spool), "--output", str(tmp_path / "out"),
           "--chunk-size", "4", "--no-progress", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = merge_job(tmp_path / "out")
    assert merged["items"] == 24
    got = [json.loads(x) for x in Path(merged["results"]).read_text().splitlines()]
    assert sorted(r["id"] for r in got) == sorted(f"t{k}" for k in range(24))
    tok = PromptTokenizer(tmp_path / "model")
    assert all(r["text"] == tok.decode(r["tokens"]) and len(r["tokens"]) <= 3 for r in got)
    assert {r["metrics"]["rank"] for r in got} == {0, 1}
