"""The weights' identity of a Hugging Face directory leaves out files that do not change what the
engine computes (fabric_hpc/inference/weights.py): a user who ran token-id prompts, then added the
tokenizer files, a README, a LICENSE or .gitattributes (what `huggingface-cli download` leaves) to
the model directory was refused as serving "other weights" on resume. A changed weights file or
config.json is still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.inference.engines import prepare_pytorch_engine
from fabric_hpc.inference.weights import left_out

from .conftest import LIMITS, hf_tiny

IDS = [{"id": f"i{k}", "prompt": [5 + k, 6, 7], "max_new_tokens": 2} for k in range(3)]

#: what each kind of left-out file looks like when it is added to a model directory
ADDED = {
    "tokenizer_config.json": '{"add_bos_token": true}', "special_tokens_map.json": '{"bos_token": "<s>"}',
    "tokenizer.model": "\x00sentencepiece", "vocab.json": '{"a": 0}', "vocab.txt": "a\nb\n",
    "merges.txt": "#version: 0.2\na b\n", "added_tokens.json": "{}", "chat_template.jinja": "{{ x }}",
    "chat_template.json": '{"chat_template": "{{ x }}"}', "README.md": "# tiny\n",
    "USE_POLICY.md": "be nice\n",
    "LICENSE": "Apache-2.0\n", "LICENSE.txt": "MIT\n", "NOTICE": "(c)\n", ".gitattributes": "*.bin lfs\n",
    ".gitignore": "*.pyc\n",
}


def _resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["infer", "run", "--engine-config", str(tmp_path / "engine.json"), "--input",
               str(tmp_path / "spool"), "--output", str(tmp_path / "out"), "--no-progress"])
    return rc, capsys.readouterr().err


@pytest.fixture()
def model(tmp_path: Path, hf_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A copy of the tiny save_pretrained directory (config.json, generation_config.json,
    model.safetensors: no tokenizer), prepared as a PyTorch engine, and a finished token-id run."""
    shutil.copytree(hf_dir, tmp_path / "model")
    cfg = prepare_pytorch_engine(tmp_path / "model", dtype="float32", **LIMITS)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "a.jsonl").write_text("".join(json.dumps(it) + "\n" for it in IDS))
    assert _resume(tmp_path, capsys)[0] == 0
    return tmp_path / "model"


def test_adding_tokenizer_and_documentation_files_resumes(tmp_path: Path, model: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.inference_engines.test_text_prompts import save_tokenizer

    pytest.importorskip("tokenizers")
    save_tokenizer(model)
    rc, err = _resume(tmp_path, capsys)
    assert rc == 0, err
    for name, text in ADDED.items():
        (model / name).write_text(text)
        rc, err = _resume(tmp_path, capsys)
        assert rc == 0, f"{name}: {err}"
    gen = model / "generation_config.json"  # no fabric engine reads it: changed or gone, it resumes
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "eos_token_id": [2, 3], "temperature": 0.7}))
    assert _resume(tmp_path, capsys)[0] == 0
    gen.unlink()
    assert _resume(tmp_path, capsys)[0] == 0
    with (tmp_path / "spool" / "a.jsonl").open("a") as f:  # the tokenizer now added is used for text
        f.write(json.dumps({"id": "t", "prompt": "w1 w2", "max_new_tokens": 2}) + "\n")
    rc, err = _resume(tmp_path, capsys)
    assert rc == 0 and main(["infer", "merge", str(tmp_path / "out")]) == 0, err


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _resume(tmp_path, capsys)
    assert rc == 3 and "the engine now serves engine files sha256" in err and "cannot resume it" in err, err
    assert "Traceback" not in err


def test_a_changed_weights_file_or_config_is_still_refused(tmp_path: Path, model: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (model / "README.md").write_text("# tiny\n")
    config = (model / "config.json").read_text()
    doc = json.loads(config)
    (model / "config.json").write_text(json.dumps({**doc, "rms_norm_eps": doc["rms_norm_eps"] * 2}))
    _refused(tmp_path, capsys)
    (model / "config.json").write_text(config)
    assert _resume(tmp_path, capsys)[0] == 0
    weights = (model / "model.safetensors").read_bytes()
    hf_tiny(seed=1).save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", model / "model.safetensors")
    _refused(tmp_path, capsys)
    (model / "model.safetensors").write_bytes(weights)
    (model / "pytorch_model.bin").write_bytes(b"other")  # a file not known to be harmless counts
    _refused(tmp_path, capsys)


def _digest_before_files_were_left_out(root: Path) -> str:
    """The digest run.json recorded before files were left out: every top-level file but
    fabric_engine.json, small files hashed whole (this directory has no large one)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted((p for p in root.iterdir() if p.is_file() and p.name != "fabric_engine.json"),
                    key=lambda p: p.name):
        data = p.read_bytes()
        h.update(f"{p.name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def _record_old_style(out: Path, model: Path) -> dict[str, Any]:
    doc = json.loads((out / "run.json").read_text())
    doc["weights"] = {**doc["weights"], "sha256": _digest_before_files_were_left_out(model)}
    (out / "run.json").write_text(json.dumps(doc))
    return doc


def test_a_run_json_of_the_older_digest_resumes(tmp_path: Path, model: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (model / "README.md").write_text("# tiny\n")  # the older digest covered it (and generation_config.json)
    new = json.loads((tmp_path / "out" / "run.json").read_text())["weights"]
    old = _record_old_style(tmp_path / "out", model)
    assert old["weights"]["sha256"] != new["sha256"]  # the directory has left-out files
    rc, err = _resume(tmp_path, capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == old  # kept as written
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    _refused(tmp_path, capsys)  # other weights are refused against the older digest too


def test_which_files_are_left_out() -> None:
    for name in [*ADDED, "tokenizer.json", "generation_config.json", "readme.MD", "License.md"]:
        assert left_out(name), name
    for name in ("config.json", "model.safetensors", "model.safetensors.index.json", "rank0.engine",
                 "pytorch_model.bin", "params.json", "README", "tokenizer.json.bak", "my.md.safetensors",
                 "license-free-model-00001-of-00002.safetensors", "notice.bin", "LICENSE.pt"):
        assert not left_out(name), name
