"""Serving a fabric checkpoint step directly: logits bit-identical to the same weights loaded
from Hugging Face safetensors (float32 on CPU: the same values in the same kernels), Megatron
names mapped, damage and mismatches refused."""

from __future__ import annotations

import os

import copy

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_hpc.checkpoint import CheckpointCorruptError, save
from fabric_hpc.checkpoint.convert import convert
from fabric_hpc.checkpoint.convert.llama import hf_to_megatron
from fabric_hpc.checkpoint.interop.hf import import_hf
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inference import EngineRequest, build_engine, load_engine_config
from fabric_hpc.inference.engines import prepare_pytorch_engine
from fabric_hpc.inference.testing import drain

from .conftest import LIMITS, TINY
from .test_torch_engine import hf_greedy

PROMPTS = [[5, 9, 200, 17, 3], [1000, 2, 2, 7], [64, 65, 66, 67, 68, 69, 70, 71, 72]]


@pytest.fixture(scope="module")
def hf_ckpt(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny transformers Llama (save_pretrained) imported as a fabric checkpoint."""
    root = tmp_path_factory.mktemp("ckpt-hf")
    import_hf(hf_dir, root, step=7)
    return root


def _logits(config: dict[str, Any]) -> torch.Tensor:
    engine = build_engine(load_engine_config(config), device="cpu")
    model = engine.model  # type: ignore[attr-defined]
    plen = max(map(len, PROMPTS))
    tokens = torch.tensor([p + [0] * (plen - len(p)) for p in PROMPTS])
    with torch.inference_mode():
        out = model.prefill(tokens, torch.tensor([len(p) for p in PROMPTS]), None, None, all_logits=True)
    engine.close()
    return out


def _tokens(config: dict[str, Any], new: int = 10) -> dict[str, list[int]]:
    engine = build_engine(load_engine_config(config), device="cpu", stop_at_eos=False)
    engine.add([EngineRequest(f"r{i}", p, new) for i, p in enumerate(PROMPTS)])
    got = {r.id: r.tokens for r in drain(engine)}
    engine.close()
    return got


def test_served_from_checkpoint_equals_safetensors(engine_config: dict[str, Any], hf_ckpt: Path,
                                                   hf_model: Any, tmp_path: Path) -> None:
    cfg = prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=hf_ckpt, **LIMITS)
    build = json.loads((tmp_path / "eng" / "fabric_engine.json").read_text())
    assert build["weights"] == "fabric-checkpoint"
    assert build["checkpoint"] == {"path": str(hf_ckpt.resolve()), "step": 7, "prefix": "",
                                   "naming": "huggingface"}
    assert json.loads((tmp_path / "eng" / "config.json").read_text()) == \
        json.loads((Path(engine_config["engine_dir"]) / "config.json").read_text())
    # same float32 values through the same code: bit-identical logits, same greedy tokens
    assert torch.equal(_logits(cfg), _logits(engine_config))
    got = _tokens(cfg)
    assert got == _tokens(engine_config)
    for i, p in enumerate(PROMPTS):  # and transformers agrees on the tokens
        assert got[f"r{i}"] == hf_greedy(hf_model, p, 10)


def test_megatron_names_are_mapped(engine_config: dict[str, Any], hf_ckpt: Path, tmp_path: Path) -> None:
    mg = tmp_path / "mg"
    convert(hf_ckpt, mg, hf_to_megatron(TINY.num_heads, TINY.num_kv_heads))
    cfg = prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=mg, **LIMITS)
    build = json.loads((tmp_path / "eng" / "fabric_engine.json").read_text())
    assert build["checkpoint"]["naming"] == "megatron"
    assert torch.equal(_logits(cfg), _logits(engine_config))  # rows moved, not changed


def test_save_api_subtree_and_bf16(hf_model: Any, tmp_path: Path) -> None:
    """A training-style save ({"model": state_dict, ...}) in bfloat16, served in bfloat16, equals
    the same bf16 weights loaded from safetensors (bit for bit: same values, same kernels)."""
    state = {k: v.detach().to(torch.bfloat16) for k, v in hf_model.state_dict().items()}
    config = {k: v for k, v in TINY.hf_config().items()}
    save(tmp_path / "ck", {"model": state, "trainer": {"step": torch.tensor(3)}}, step=3,
         metadata={"hf_files": {"config.json": config}})
    cfg = prepare_pytorch_engine(tmp_path / "eng", dtype="bfloat16", checkpoint=tmp_path / "ck", **LIMITS)
    assert json.loads((tmp_path / "eng" / "fabric_engine.json").read_text())["checkpoint"]["prefix"] == "model"
    hf = tmp_path / "hf"
    copy.deepcopy(hf_model).to(torch.bfloat16).save_pretrained(hf)  # the shared fixture keeps its fp32 weights
    ref = prepare_pytorch_engine(hf, dtype="bfloat16", **LIMITS)
    assert torch.equal(_logits(cfg), _logits(ref))


def test_damaged_checkpoint_is_refused_clearly(hf_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ck"
    import_hf(hf_dir, root, step=1)
    cfg = prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=root, **LIMITS)
    chunk = next((root / "step-0000000001" / "model.layers.1.mlp.up_proj.weight").glob("c*"))
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match="model.layers.1.mlp.up_proj.weight"):
        build_engine(load_engine_config(cfg), device="cpu")
    # the CLI: exit 3, one line naming the chunk, no traceback
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    spool = tmp_path / "in.jsonl"
    spool.write_text(json.dumps({"id": "a", "prompt": [1, 2, 3], "max_new_tokens": 2}) + "\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "fabric"), "infer", "run", "--engine-config",
                           str(tmp_path / "engine.json"), "--input", str(spool), "--output",
                           str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "up_proj.weight" in proc.stderr and "crc32c" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_artefact_check_fails_closed(hf_ckpt: Path, tmp_path: Path) -> None:
    eng = tmp_path / "eng"
    cfg = prepare_pytorch_engine(eng, dtype="float32", checkpoint=hf_ckpt, **LIMITS)
    good = json.loads((eng / "fabric_engine.json").read_text())

    def with_build(doc: dict[str, Any]) -> None:
        (eng / "fabric_engine.json").write_text(json.dumps(doc))
        load_engine_config(cfg)

    with pytest.raises(ConfigError, match="unknown key .tp_rank."):
        with_build({**good, "checkpoint": {**good["checkpoint"], "tp_rank": 0}})
    missing = {k: v for k, v in good["checkpoint"].items() if k != "step"}
    with pytest.raises(ConfigError, match="step"):
        with_build({**good, "checkpoint": missing})
    with pytest.raises(ConfigError, match="checkpoint"):
        with_build({k: v for k, v in good.items() if k != "checkpoint"})
    with pytest.raises(NotFoundError, match="step 8"):
        with_build({**good, "checkpoint": {**good["checkpoint"], "step": 8}})
    with pytest.raises(ConfigError, match="megatron"):
        with_build({**good, "checkpoint": {**good["checkpoint"], "naming": "megatron"}})
    with pytest.raises(ConfigError, match="no tensors below"):
        with_build({**good, "checkpoint": {**good["checkpoint"], "prefix": "optim"}})
    (eng / "fabric_engine.json").write_text(json.dumps(good))
    doc = json.loads((eng / "config.json").read_text())
    (eng / "config.json").write_text(json.dumps({**doc, "rms_norm_eps": 1e-3}))
    with pytest.raises(ConfigError, match="different models"):
        load_engine_config(cfg)


def test_cli_prepare(hf_ckpt: Path, tmp_path: Path) -> None:
    from fabric_hpc.cli.main import main

    limits = ["--max-batch-size", "8", "--max-input-len", "48", "--max-seq-len", "96", "--max-num-tokens", "256"]
    args = ["infer", "prepare", str(tmp_path / "eng"), "--checkpoint", str(hf_ckpt), "--step", "7",
            "--dtype", "float32", *limits, "--config-out", str(tmp_path / "engine.json")]
    assert main(args) == 0
    cfg = load_engine_config(tmp_path / "engine.json")
    assert (cfg.engine, cfg.max_seq_len) == ("pytorch", 96)
    # a checkpoint without a model config (and an engine dir without one): exit 3, one line
    save(tmp_path / "bare", {"model": {"model.embed_tokens.weight": torch.zeros(4, 2)}}, step=1)
    bad = ["infer", "prepare", str(tmp_path / "eng2"), "--checkpoint", str(tmp_path / "bare"),
           "--dtype", "float32", *limits, "--config-out", str(tmp_path / "e2.json")]
    assert main(bad) == 3
    assert not (tmp_path / "e2.json").exists()
    # run from another directory into a config elsewhere: engine_dir is written relative to the
    # config file, which is how `infer run` reads it (it was written as typed, relative to the cwd)
    (tmp_path / "cfgs").mkdir()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["infer", "prepare", "eng3", "--checkpoint", str(hf_ckpt), "--step", "7", "--dtype",
                     "float32", *limits, "--config-out", "cfgs/e3.json"]) == 0
    finally:
        os.chdir(old)
    assert load_engine_config(tmp_path / "cfgs" / "e3.json").engine_dir == str(tmp_path / "eng3")
    # the config's directory is checked before the engine directory is written
    assert main(["infer", "prepare", str(tmp_path / "eng4"), "--checkpoint", str(hf_ckpt), "--dtype", "float32",
                 *limits, "--config-out", str(tmp_path / "nodir" / "e4.json")]) == 3
    assert not (tmp_path / "eng4").exists()


def test_a_failed_prepare_leaves_no_directory_it_created(tmp_path: Path) -> None:
    """The checkpoint carries no config.json: prepare fails, and the engine directory it made for
    the answer is gone again (a half-prepared directory used to stay behind)."""
    import numpy as np

    save(tmp_path / "ck", {"w": np.zeros(2, np.float32)}, step=1)
    with pytest.raises(ConfigError, match="carries no config.json"):
        prepare_pytorch_engine(tmp_path / "engine", dtype="float32", max_batch_size=2, max_input_len=8,
                               max_seq_len=16, max_num_tokens=32, checkpoint=tmp_path / "ck")
    assert not (tmp_path / "engine").exists()
    (tmp_path / "mine").mkdir()  # a directory the user made is kept
    with pytest.raises(ConfigError):
        prepare_pytorch_engine(tmp_path / "mine", dtype="float32", max_batch_size=2, max_input_len=8,
                               max_seq_len=16, max_num_tokens=32, checkpoint=tmp_path / "ck")
    assert (tmp_path / "mine").is_dir()


def test_fp8_checkpoint_is_refused_naming_the_dtype_and_its_source(hf_ckpt: Path, tmp_path: Path) -> None:
    """An fp8 checkpoint (from convert) listed its *_scale tensors as "not a weight of this model" and
    advised a bfloat16 cast, which convert refuses for fp8 sources: it now names the fp8 dtype and
    the checkpoint it was converted from."""
    fp8 = tmp_path / "fp8"
    convert(hf_ckpt, fp8, {"cast": [{"match": r".*_proj\.weight", "to": "float8_e4m3fn", "scale": "tensor"}]})
    with pytest.raises(ConfigError, match=r"holds float8_e4m3fn weights .*cannot dequantise") as info:
        prepare_pytorch_engine(tmp_path / "eng", dtype="bfloat16", checkpoint=fp8, **LIMITS)
    assert "not a weight of this model" not in info.value.message and "_scale" not in info.value.message
    assert "step-0000000007 step 7" in info.value.hint and "cast" not in info.value.hint
    assert not (tmp_path / "eng").exists()


def test_a_prefix_without_llama_names_is_refused_without_mentioning_a_prior_prepare(tmp_path: Path) -> None:
    """--prefix picking a subtree of other names said "the engine was prepared for huggingface"
    although nothing had been prepared yet."""
    save(tmp_path / "ck", {"model": {"model.embed_tokens.weight": torch.zeros(4, 2)},
                           "optim": {"m": torch.zeros(3)}}, step=1,
         metadata={"hf_files": {"config.json": TINY.hf_config()}})
    with pytest.raises(ConfigError, match=r"prefix 'optim'\): tensor names are neither Hugging Face nor "
                                          r"Megatron-core Llama names \(e.g. m\)") as info:
        prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=tmp_path / "ck", prefix="optim",
                               **LIMITS)
    assert "prepared for" not in info.value.message and "--prefix" in info.value.hint


def test_a_resume_after_a_newer_step_was_prepared_is_refused(hf_dir: Path, hf_model: Any, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The audit's repro: prepare (step 0), run 10 items, import other weights as step 1, add input,
    prepare again (latest: step 1), run: it resumed with step 1's weights and merge said ok. Now the
    run names both checkpoints and exits 3; pinning step 0 again resumes."""
    from fabric_hpc.cli.main import main

    ck, spool = tmp_path / "ck", tmp_path / "spool"
    import_hf(hf_dir, ck, step=0)
    other = tmp_path / "hf-other"
    copy.deepcopy(hf_model).half().float().save_pretrained(other)  # rounded: other weights, same shapes
    spool.mkdir()
    items = [{"id": f"a{k}", "prompt": [k + 1, 5, 9], "max_new_tokens": 2} for k in range(12)]
    (spool / "p0.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[:10]))
    limits = ["--max-batch-size", "8", "--max-input-len", "48", "--max-seq-len", "96", "--max-num-tokens", "256"]

    def prepare(*step: str) -> int:
        return main(["infer", "prepare", str(tmp_path / "eng"), "--checkpoint", str(ck), *step, "--dtype", "float32",
                     *limits, "--config-out", str(tmp_path / "engine.json")])

    run = ["infer", "run", "--engine-config", str(tmp_path / "engine.json"), "--input", str(spool),
           "--output", str(tmp_path / "out"), "--no-progress"]
    assert prepare() == 0 and main(run) == 0
    import_hf(other, ck, step=1)
    (spool / "p1.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[10:]))
    assert prepare() == 0  # the latest step: 1
    capsys.readouterr()
    assert main(run) == 3
    err = capsys.readouterr().err
    assert f"served checkpoint {ck.resolve()} step 0; the engine now serves checkpoint {ck.resolve()} step 1" in err
    assert "Traceback" not in err and "--step N" in err
    assert prepare("--step", "0") == 0 and main(run) == 0
    assert main(["infer", "merge", str(tmp_path / "out")]) == 0
