"""convert: transposes (GPT-2 Conv1D <-> Linear) and pipeline stages merged or split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError, list_checkpoints, restore, save, verify
from fabric_hpc.checkpoint.convert import convert
from fabric_hpc.checkpoint.format import flatten
from tests.real import require_real

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

H = 8


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


def _gpt2(layers: int = 2) -> dict[str, "torch.Tensor"]:
    """GPT-2 style weights: Conv1D stores [in, out] and computes x @ W + b."""
    g = torch.Generator().manual_seed(0)
    out = {"wte.weight": torch.randn(50, H, generator=g)}
    for i in range(layers):
        p = f"h.{i}."
        out |= {p + "attn.c_attn.weight": torch.randn(H, 3 * H, generator=g),
                p + "attn.c_attn.bias": torch.randn(3 * H, generator=g),
                p + "attn.c_proj.weight": torch.randn(H, H, generator=g),
                p + "mlp.c_fc.weight": torch.randn(H, 4 * H, generator=g),
                p + "mlp.c_proj.weight": torch.randn(4 * H, H, generator=g)}
    return out


TO_LINEAR = {
    "transpose": [r"h\.\d+\.(attn|mlp)\.c_\w+\.weight"],
    "split": [{"fused": f"h.{{i}}.attn.c_attn.{w}", "parts": [f"h.{{i}}.attn.{p}.{w}" for p in "qkv"]}
              for w in ("weight", "bias")],
}
TO_CONV1D = {
    "fuse": [{"parts": [f"h.{{i}}.attn.{p}.{w}" for p in "qkv"], "into": f"h.{{i}}.attn.c_attn.{w}"}
             for w in ("weight", "bias")],
    "transpose": [r"h\.\d+\.(attn\.c_proj|mlp\.c_\w+)\.weight",
                  {"match": r"h\.\d+\.attn\.c_attn\.weight", "after_fuse": True}],
}


@pytest.mark.parametrize("block", [None, 64])  # whole reads, and blocks of a few rows
def test_conv1d_linear_round_trip(tmp_path: Path, block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from fabric_hpc.checkpoint.convert import run
    if block:
        monkeypatch.setattr(run, "TRANSPOSE_BYTES", block)  # transposed reads a few source rows at a time
    state = _gpt2()
    save(tmp_path / "gpt2", state, step=1)
    convert(tmp_path / "gpt2", tmp_path / "lin", TO_LINEAR, block_bytes=block)
    lin = restore(tmp_path / "lin", as_torch=True)
    x = torch.randn(3, H)
    for i in range(2):
        p = f"h.{i}."
        ref = x @ state[p + "attn.c_attn.weight"] + state[p + "attn.c_attn.bias"]  # Conv1D
        for j, q in enumerate("qkv"):
            assert lin[p + f"attn.{q}.weight"].shape == (H, H)
            got = torch.nn.functional.linear(x, lin[p + f"attn.{q}.weight"], lin[p + f"attn.{q}.bias"])
            assert torch.allclose(got, ref[:, j * H:(j + 1) * H], atol=1e-5)
        assert torch.equal(lin[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.weight"].T)
        assert torch.equal(lin[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.weight"].T)
    assert torch.equal(lin["wte.weight"], state["wte.weight"]) and verify(tmp_path / "lin").ok
    convert(tmp_path / "lin", tmp_path / "back", TO_CONV1D, block_bytes=block)
    back = restore(tmp_path / "back", as_torch=True)
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())


def test_transpose_with_cast_and_tensor_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transposed tensor cast block by block to bf16, and split for tp 2 (whole reads)."""
    from fabric_hpc.checkpoint.convert import run
    monkeypatch.setattr(run, "TRANSPOSE_BYTES", 48)
    state = _gpt2(1)
    save(tmp_path / "gpt2", state, step=1)
    w = state["h.0.mlp.c_fc.weight"]  # [H, 4H] -> Linear [4H, H]
    convert(tmp_path / "gpt2", tmp_path / "bf", {"transpose": [r".*c_fc\.weight"],
                                                 "cast": [{"match": r".*c_fc\.weight", "to": "bfloat16"}]},
            block_bytes=64)
    got = restore(tmp_path / "bf", as_torch=True)["h.0.mlp.c_fc.weight"]
    assert got.dtype == torch.bfloat16 and torch.equal(got, w.T.contiguous().to(torch.bfloat16))
    convert(tmp_path / "gpt2", tmp_path / "tp", {"transpose": [r".*c_fc\.weight"],
                                                 "tp": {"size": 2, "column": [r".*c_fc\.weight"]}})
    part = restore(tmp_path / "tp", as_torch=True, rank=1, world_size=2)["h.0.mlp.c_fc.weight"]
    assert torch.equal(part, w.T[2 * H:])


def test_transpose_refusals_and_damage(tmp_path: Path) -> None:
    save(tmp_path / "gpt2", _gpt2(1), step=1)
    bad = [({"transpose": [r".*c_attn\.bias"]}, "only 2-d"),
           ({"transpose": ["nothing.*"]}, "matches no tensor"),
           ({"transpose": [r".*c_attn\.weight"], "fuse": [{"parts": ["h.{i}.attn.c_attn.weight",
                                                                      "h.{i}.attn.c_proj.weight"], "into": "x{i}"}]},
            "transposed"),
           ({"transpose": [".*c_fc.weight", {"match": ".*c_fc.weight", "after_fuse": True}]}, "twice")]
    for recipe, msg in bad:
        with pytest.raises(CheckpointError, match=msg):
            convert(tmp_path / "gpt2", tmp_path / "out", recipe)
    chunk = tmp_path / "gpt2" / "step-0000000001" / "h.0.mlp.c_fc.weight" / "c.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[7] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptError, match="c_fc.weight/c.0.0"):
        convert(tmp_path / "gpt2", tmp_path / "out", {"transpose": [r".*c_fc\.weight"]})
    assert not (tmp_path / "out").exists() or not list_checkpoints(tmp_path / "out")


STAGES = [3, 2, 1]  # uneven pipeline stages (Megatron PP ranks, each numbering its layers from 0)
PIPE = {"layers": STAGES, "stage_layer": "pp{s}/decoder.layers.{i}.", "layer": "decoder.layers.{i}.",
        "stage": "pp{s}/"}


def _staged() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(stage-local state, the same in global numbering): every layer's tensors hold its global number."""
    local, glob, g = {}, {}, 0
    for s, n in enumerate(STAGES):
        for i in range(n):
            for t in ("self_attention.linear_qkv.weight", "mlp.linear_fc2.weight"):
                v = np.full((4, 3), g, np.float32) + np.arange(3, dtype=np.float32)
                local[f"pp{s}/decoder.layers.{i}.{t}"] = glob[f"decoder.layers.{g}.{t}"] = v
            g += 1
    emb, norm, out = (np.random.default_rng(k).standard_normal((5, 3)).astype(np.float32) for k in range(3))
    local |= {"pp0/embedding.word_embeddings.weight": emb, "pp2/decoder.final_layernorm.weight": norm,
              "pp2/output_layer.weight": out, "optim/step": np.array(7)}
    glob |= {"embedding.word_embeddings.weight": emb, "decoder.final_layernorm.weight": norm,
             "output_layer.weight": out, "optim/step": np.array(7)}
    return local, glob


def test_pipeline_stages_merged_and_split_back(tmp_path: Path) -> None:
    local, glob = _staged()
    save(tmp_path / "pp", local, step=3)
    rep = convert(tmp_path / "pp", tmp_path / "merged", {"pipeline": {"mode": "merge", **PIPE}})
    merged = dict(flatten(restore(tmp_path / "merged")))
    assert merged.keys() == glob.keys() and all(np.array_equal(merged[k], v) for k, v in glob.items())
    assert rep.step == 3 and verify(tmp_path / "merged").ok
    split = {"pipeline": {"mode": "split", **PIPE, "first": [r"embedding\..*"],
                          "last": [r"decoder\.final_layernorm\..*", r"output_layer\..*"]}}
    convert(tmp_path / "merged", tmp_path / "staged", split)
    back = dict(flatten(restore(tmp_path / "staged")))
    assert back.keys() == local.keys() and all(np.array_equal(back[k], v) for k, v in local.items())
    from fabric_hpc.checkpoint import open_checkpoint
    assert open_checkpoint(tmp_path / "staged").manifest.layout["pp_layers"] == STAGES


def test_pipeline_merge_then_hugging_face_names(tmp_path: Path) -> None:
    """Merge runs before the renames, so one recipe takes PP stages to global HF-style names."""
    local, _ = _staged()
    save(tmp_path / "pp", local, step=1)
    convert(tmp_path / "pp", tmp_path / "hf", {
        "pipeline": {"mode": "merge", **PIPE},
        "rename": [{"pattern": r"^decoder\.layers\.(\d+)\.mlp\.linear_fc2\.weight$",
                    "replace": r"model.layers.\1.mlp.down_proj.weight"}]})
    got = restore(tmp_path / "hf")
    assert [int(got[f"model.layers.{g}.mlp.down_proj.weight"][0, 0]) for g in range(6)] == list(range(6))


@pytest.mark.parametrize("layers,msg", [
    ([3, 2], "stage 2, the recipe has 2 stages"),
    ([2, 3, 1], "layer 2 of stage 0, which has 2 layers"),
    ([4, 2, 1], "stage 0 holds layers 0-2, the recipe says 4"),
])
def test_pipeline_merge_counts_must_add_up(tmp_path: Path, layers: list[int], msg: str) -> None:
    local, _ = _staged()
    save(tmp_path / "pp", local, step=1)
    with pytest.raises(CheckpointError, match=msg):
        convert(tmp_path / "pp", tmp_path / "out", {"pipeline": {"mode": "merge", **PIPE, "layers": layers}})
    assert not (tmp_path / "out").exists()


def test_pipeline_split_counts_and_recipe_checks(tmp_path: Path) -> None:
    _, glob = _staged()
    save(tmp_path / "g", glob, step=1)
    for layers, msg in (([3, 2], "layer 5, the stages"), ([3, 2, 2], "has layers 0-5, the stages .* add up to 7")):
        with pytest.raises(CheckpointError, match=msg):
            convert(tmp_path / "g", tmp_path / "out", {"pipeline": {"mode": "split", **PIPE, "layers": layers}})
    from fabric_hpc.errors import ConfigError
    for bad in ({"stage_layer": "pp{s}/decoder.layers."}, {"layers": [0, 0]}, {"stage": "pp/"}, {"layer": "x{s}{i}"}):
        with pytest.raises(ConfigError):
            convert(tmp_path / "g", tmp_path / "out", {"pipeline": {"mode": "split", **PIPE, **bad}})
    with pytest.raises(CheckpointError, match="first"):
        convert(tmp_path / "g", tmp_path / "out", {"pipeline": {"mode": "merge", **PIPE, "first": ["x"]}})
    assert not (tmp_path / "out").exists()
