"""fabric ckpt convert: dtype (bf16, fp8 with scales), renames, fused <-> separate projections,
head-aware tensor-parallel layout; strict recipes; nothing visible after a failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import (
    CheckpointCorruptError, CheckpointError, list_checkpoints, open_checkpoint, restore, save, verify,
)
from fabric_hpc.checkpoint.convert import convert, load_recipe
from fabric_hpc.errors import ConfigError
from tests.real import require_real

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


def _bits(t: "torch.Tensor") -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dim() else t.numpy().tobytes()


def _nothing_visible(root: Path, before: int = 0) -> None:
    if not root.exists():  # a failed write into a new root removes the root too
        assert before == 0
        return
    assert len(list_checkpoints(root)) == before
    assert not [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_fp32_bf16_both_ways_bit_exact_with_torch(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 70, generator=g) * 3
    save(tmp_path / "ck", {"w": w, "ids": torch.arange(5)}, step=2)
    rep = convert(tmp_path / "ck", tmp_path / "bf", {"cast": [{"match": "w", "to": "bfloat16"}]}, block_bytes=4096)
    got = restore(tmp_path / "bf", as_torch=True)
    assert got["w"].dtype == torch.bfloat16 and _bits(got["w"]) == _bits(w.to(torch.bfloat16))
    assert torch.equal(got["ids"], torch.arange(5)) and rep.step == 2 and verify(tmp_path / "bf").ok
    row = next(r for r in rep.tensors if r["name"] == "w")
    want = float(((w.to(torch.bfloat16).float() - w).double().norm() / w.double().norm()))
    assert row["rel_rms_error"] == pytest.approx(want, rel=1e-6) and 0 < want < 1e-2
    assert open_checkpoint(tmp_path / "bf").manifest.user_metadata["cast_rel_rms_error"]["w"] == row["rel_rms_error"]
    convert(tmp_path / "bf", tmp_path / "back", {"cast": [{"match": ".*", "to": "float32"}]})
    back = restore(tmp_path / "back", as_torch=True)
    assert torch.equal(back["w"], w.to(torch.bfloat16).float())


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("scale", ["tensor", "channel"])
def test_fp8_with_scales_beside_the_weight(tmp_path: Path, fmt: str, scale: str) -> None:
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(64, 48, generator=g) * torch.linspace(0.01, 5, 64)[:, None]).to(torch.bfloat16)
    save(tmp_path / "ck", {"layers": {"0": {"weight": w, "norm": torch.ones(48)}}}, step=1)
    rep = convert(tmp_path / "ck", tmp_path / "q",
                  {"cast": [{"match": r".*\.?weight|layers/0/weight", "to": fmt, "scale": scale}]}, block_bytes=1000)
    got = restore(tmp_path / "q", as_torch=True)["layers"]["0"]
    q, s = got["weight"], got["weight_scale"]
    fmax = torch.finfo(getattr(torch, fmt)).max
    x = w.float()
    want_s = (x.abs().amax(dim=1, keepdim=True) if scale == "channel" else x.abs().max()) / fmax
    assert q.dtype == getattr(torch, fmt) and s.dtype == torch.float32
    assert s.shape == ((64, 1) if scale == "channel" else ()) and torch.allclose(s, want_s)
    assert _bits(q) == _bits((x / want_s).clamp(-fmax, fmax).to(getattr(torch, fmt)))
    deq = q.float() * s
    row = next(r for r in rep.tensors if r["name"] == "layers/0/weight")
    rel = float((deq - x).double().norm() / x.double().norm())
    assert row["rel_rms_error"] == pytest.approx(rel, rel=1e-5) and row["scale"] == scale
    assert rel < (0.08 if fmt == "float8_e4m3fn" else 0.15)
    assert "layers/0/norm" not in [r["name"] for r in rep.tensors if "scale" in r]


def _llama_state(heads: int = 4, kv: int = 2, hidden: int = 32, layers: int = 2, vocab: int = 96) -> dict:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=48,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv)
    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in transformers.LlamaForCausalLM(cfg).state_dict().items()}


def test_fp8_refuses_non_finite_values(tmp_path: Path) -> None:
    w = torch.ones(4, 4)
    w[2, 1] = float("inf")
    save(tmp_path / "ck", {"w": w}, step=0)
    for scale in ("tensor", "channel"):
        with pytest.raises(CheckpointError, match="NaN or inf"):
            convert(tmp_path / "ck", tmp_path / "o", {"cast": [{"match": "w", "to": "float8_e4m3fn", "scale": scale}]})
    _nothing_visible(tmp_path / "o")


def test_megatron_hf_llama_round_trip(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.convert.llama import hf_to_megatron, megatron_to_hf
    sd = _llama_state()
    save(tmp_path / "hf", sd, step=9)
    convert(tmp_path / "hf", tmp_path / "mg", hf_to_megatron(4, 2))
    mg = restore(tmp_path / "mg", as_torch=True)
    hd, g = 8, 2
    q = sd["model.layers.1.self_attn.q_proj.weight"].reshape(2, g * hd, 32)
    k = sd["model.layers.1.self_attn.k_proj.weight"].reshape(2, hd, 32)
    v = sd["model.layers.1.self_attn.v_proj.weight"].reshape(2, hd, 32)
    assert torch.equal(mg["decoder.layers.1.self_attention.linear_qkv.weight"],
                       torch.cat([q, k, v], dim=1).reshape(-1, 32))
    assert torch.equal(mg["decoder.layers.0.mlp.linear_fc1.weight"],
                       torch.cat([sd["model.layers.0.mlp.gate_proj.weight"], sd["model.layers.0.mlp.up_proj.weight"]]))
    assert torch.equal(mg["embedding.word_embeddings.weight"], sd["model.embed_tokens.weight"])
    assert torch.equal(mg["decoder.layers.0.self_attention.linear_qkv.layer_norm_weight"],
                       sd["model.layers.0.input_layernorm.weight"])
    convert(tmp_path / "mg", tmp_path / "back", megatron_to_hf(4, 2))
    back = restore(tmp_path / "back", as_torch=True)
    assert set(back) == set(sd) and all(_bits(back[n]) == _bits(sd[n]) for n in sd)


def _qkv_state(heads: int, kv: int, hd: int = 2, hidden: int = 3) -> tuple[dict, "torch.Tensor"]:
    rows = (heads + 2 * kv) * hd
    fused = torch.arange(rows * hidden, dtype=torch.float32).reshape(rows, hidden)
    return {"qkv": fused, "o": torch.ones(hidden, heads * hd), "emb": torch.ones(10, hidden)}, fused


def test_tp_head_aware_split_and_vocab_padding(tmp_path: Path) -> None:
    state, fused = _qkv_state(heads=4, kv=2)
    save(tmp_path / "ck", state, step=1)
    recipe = {"tp": {"size": 2, "attention": [{"match": "qkv", "heads": 4, "kv_heads": 2}],
                     "row": ["o"], "vocab": ["emb"], "vocab_multiple_of": 8}}
    convert(tmp_path / "ck", tmp_path / "tp", recipe)
    m = open_checkpoint(tmp_path / "tp").manifest
    assert m.layout["tp"] == 2 and m.tensors["o"].split.model_dump() == {"dim": 1, "parts": 2}
    assert m.tensors["emb"].shape == [16, 3] and m.tensors["emb"].split.model_dump() == {"dim": 0, "parts": 2}
    q, k, v = fused[:8], fused[8:12], fused[12:]
    for r in range(2):
        part = restore(tmp_path / "tp", rank=r, world_size=2, as_torch=True)
        assert torch.equal(part["qkv"], torch.cat([q[4 * r:4 * r + 4], k[2 * r:2 * r + 2], v[2 * r:2 * r + 2]]))
    emb = restore(tmp_path / "tp", as_torch=True)["emb"]
    assert torch.equal(emb[:10], torch.ones(10, 3)) and not emb[10:].any()


def test_tp_beyond_kv_heads_refused_or_replicated(tmp_path: Path) -> None:
    state, fused = _qkv_state(heads=4, kv=2)
    state["k_proj"] = fused[8:12].clone()
    save(tmp_path / "ck", state, step=1)
    recipe = {"tp": {"size": 4, "attention": [{"match": "qkv", "heads": 4, "kv_heads": 2},
                                              {"match": "k_proj", "heads": 4, "kv_heads": 2, "kind": "kv"}]}}
    with pytest.raises(CheckpointError, match="2 KV heads; splitting them 4 ways") as err:
        convert(tmp_path / "ck", tmp_path / "tp", recipe)
    assert "kv_short: replicate" in str(err.value)
    recipe["tp"]["kv_short"] = "replicate"
    convert(tmp_path / "ck", tmp_path / "tp", recipe)
    assert open_checkpoint(tmp_path / "tp").manifest.layout == {"tp": 4, "kv_replicas": 2}
    q, k, v = fused[:8], fused[8:12], fused[12:]
    for r in range(4):
        part = restore(tmp_path / "tp", rank=r, world_size=4, as_torch=True)
        h = r // 2
        assert torch.equal(part["qkv"], torch.cat([q[2 * r:2 * r + 2], k[2 * h:2 * h + 2], v[2 * h:2 * h + 2]]))
        assert torch.equal(part["k_proj"], k[2 * h:2 * h + 2])
    with pytest.raises(CheckpointError, match="not divisible by 3"):
        convert(tmp_path / "ck", tmp_path / "tp3", {"tp": {"size": 3, "attention": [
            {"match": "qkv", "heads": 4, "kv_heads": 2}]}})


def test_recipe_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'renames'"):
        load_recipe({"renames": []})
    with pytest.raises(ConfigError, match="scale"):
        load_recipe({"cast": [{"match": "w", "to": "float8_e4m3fn", "scale": "block"}]})
    (tmp_path / "r.yaml").write_text("tp:\n  size: 2\n  columns: [w]\n")
    with pytest.raises(ConfigError, match="unknown key 'columns'"):
        load_recipe(tmp_path / "r.yaml")
    save(tmp_path / "ck", {"w": np.ones((2, 2), np.int32), "f8": torch.ones(2).to(torch.float8_e4m3fn)}, step=0)
    with pytest.raises(CheckpointError, match="cannot convert float8_e4m3fn"):
        convert(tmp_path / "ck", tmp_path / "o", {"cast": [{"match": ".*", "to": "bfloat16"}]})
    convert(tmp_path / "ck", tmp_path / "o", {"cast": [{"match": "w", "to": "bfloat16"}]})  # ints stay ints
    assert open_checkpoint(tmp_path / "o").manifest.tensors["w"].dtype == "int32"
    with pytest.raises(CheckpointError, match="no tensor 'b'"):
        convert(tmp_path / "ck", tmp_path / "o", {"fuse": [{"parts": ["w", "b"], "into": "wb"}]})
    with pytest.raises(CheckpointError, match="matches no tensor"):
        convert(tmp_path / "ck", tmp_path / "o", {"split": [{"fused": "layers.{i}.w", "parts": ["a", "b"]}]})
    # a cast that casts nothing is a wrong rule (a typo), and an empty output is never the intent
    # (renames and drops may name tensors a model lacks: an untied lm_head, rotary caches)
    for recipe, needle in (({"cast": [{"match": "model\\..*", "to": "bfloat16"}]}, "cast 'model\\\\..*' matches no"),
                           ({"drop": [".*"]}, "remove every tensor")):
        with pytest.raises(CheckpointError, match=needle) as err:
            convert(tmp_path / "ck", tmp_path / "o2", recipe)
        assert "f8" in err.value.hint or "narrow" in err.value.hint, recipe  # the names the rules see
        assert not (tmp_path / "o2").exists()


def test_failing_midway_leaves_nothing_and_damage_is_caught(tmp_path: Path) -> None:
    save(tmp_path / "ck", {f"t{i}": np.full((64, 64), i, np.float32) for i in range(6)}, step=5)
    save(tmp_path / "out", {"x": np.zeros(1)}, step=1)
    calls = []

    def boom(n: int) -> None:
        calls.append(n)
        if len(calls) == 3:
            raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        convert(tmp_path / "ck", tmp_path / "out", {"cast": [{"match": ".*", "to": "bfloat16"}]}, progress=boom)
    _nothing_visible(tmp_path / "out", before=1)
    assert (tmp_path / "out" / "latest").read_text().strip() == "step-0000000001"
    chunk = tmp_path / "ck" / "step-0000000005" / "t4" / "c.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    # damage found by the streamed copy (block by block), the streamed cast, the block-wise fp8
    # pass, the reader (whole reads: fuse, tp) and the separate pass for partial reads (split)
    for recipe in ({"rename": [{"pattern": "t", "replace": "u"}]}, {"cast": [{"match": ".*", "to": "bfloat16"}]},
                   {"cast": [{"match": "t4", "to": "float8_e5m2"}]},
                   {"fuse": [{"parts": ["t3", "t4"], "into": "t34"}]}, {"tp": {"size": 2, "column": ["t.*"]}},
                   {"split": [{"fused": "t4", "parts": ["t4a", "t4b"]}]}):
        with pytest.raises(CheckpointCorruptError, match="t4/c.0.0"):
            convert(tmp_path / "ck", tmp_path / "out", recipe, block_bytes=4096)
        _nothing_visible(tmp_path / "out", before=1)


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main
    save(tmp_path / "ck", {"w": torch.randn(8, 4)}, step=3)
    (tmp_path / "r.yaml").write_text("cast:\n  - {match: w, to: float8_e4m3fn, scale: channel}\n")
    assert main(["ckpt", "convert", str(tmp_path / "ck"), str(tmp_path / "o"), "--recipe",
                 str(tmp_path / "r.yaml"), "--workers", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["step"] == 3 and data["tensors"][0]["scale"] == "channel"
    assert data["parallel"]["peak_tensors"] == 1 and data["parallel"]["budget"] > 0
    assert set(open_checkpoint(tmp_path / "o").names) == {"w", "w_scale"}
    (tmp_path / "bad.yaml").write_text("cast:\n  - {match: w, to: float8_e4m3fn, per: channel}\n")
    assert main(["ckpt", "convert", str(tmp_path / "ck"), str(tmp_path / "o2"), "--recipe",
                 str(tmp_path / "bad.yaml")]) == 3
    assert "unknown key 'per'" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_the_docs_fuse_and_split_rules_run_as_written(tmp_path: Path) -> None:
    """docs/checkpoint.md's recipe example had `split: parts: [gate, up]`, which names outputs
    'gate' and 'up' (parts are full output-name templates): it failed with "produces 'gate' twice"."""
    import yaml
    doc = (Path(__file__).resolve().parents[2] / "docs" / "checkpoint.md").read_text()
    example = yaml.safe_load(doc[doc.index("```yaml\npipeline:") + len("```yaml\n"):].split("```", 1)[0])
    gate_up = {f"model.layers.{i}.mlp.gate_up_proj.weight": np.arange(24, dtype=np.float32).reshape(6, 4) + i
               for i in (0, 1)}
    save(tmp_path / "fused", gate_up, step=1)
    convert(tmp_path / "fused", tmp_path / "split", {"split": example["split"]})
    parts = restore(tmp_path / "split")
    assert sorted(parts) == [f"model.layers.{i}.mlp.{p}_proj.weight" for i in (0, 1) for p in ("gate", "up")]
    convert(tmp_path / "split", tmp_path / "fused2", {"fuse": example["fuse"]})
    back = restore(tmp_path / "fused2")
    assert all(np.array_equal(back[n], w) for n, w in gate_up.items()) and sorted(back) == sorted(gate_up)
