"""convert: transposes (GPT-2 Conv1D <-> Linear) and pipeline stages merged or split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError, list_checkpoints, restore, save, verify
from fabric_hpc.checkpoint.convert import convert
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
