"""fp8 static activation scales (vLLM's ``input_scale`` beside ``weight`` and ``weight_scale``):
from a calibration file or an explicit value, never by default; what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, CheckpointNotFoundError, list_checkpoints, open_checkpoint, save
from fabric_hpc.checkpoint.convert import convert
from fabric_hpc.errors import ConfigError
from tests.real import require_real

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

Q, K = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    g = np.random.default_rng(0)
    save(tmp_path / "ck", {f"{Q}.weight": g.standard_normal((8, 8)).astype(np.float32),
                           f"{K}.weight": g.standard_normal((4, 8)).astype(np.float32),
                           "model.norm.weight": np.ones(8, np.float32)}, step=1)
    return tmp_path / "ck"


def _rule(**input_scale: object) -> dict:
    return {"cast": [{"match": r".*proj\.weight", "to": "float8_e4m3fn", "input_scale": input_scale}]}


def test_explicit_value_and_vllm_layout(ckpt: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from fabric_hpc.checkpoint.interop.hf import export_hf
    rep = convert(ckpt, tmp_path / "out", _rule(value=1.0))
    ck = open_checkpoint(tmp_path / "out")
    assert ck.read(f"{Q}.input_scale") == np.float32(1.0) and ck.entry(f"{Q}.input_scale").dtype == "float32"
    assert next(r for r in rep.tensors if r["name"] == f"{Q}.weight")["input_scale"] == 1.0
    assert "model.norm.input_scale" not in ck.names  # only the matched weights
    export_hf(tmp_path / "out", tmp_path / "hf")
    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        assert f.get_tensor(f"{Q}.weight").dtype == torch.float8_e4m3fn
        assert f.get_tensor(f"{Q}.weight_scale").dtype == torch.float32
        s = f.get_tensor(f"{Q}.input_scale")
        assert s.dtype == torch.float32 and s.shape == () and float(s) == 1.0
    plain = convert(ckpt, tmp_path / "plain", {"cast": [{"match": r".*proj\.weight", "to": "float8_e4m3fn"}]})
    assert not any(n.endswith("input_scale") for n in open_checkpoint(plain.path).names)  # no default


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
def test_calibration_file_relative_to_the_recipe(ckpt: Path, tmp_path: Path, fmt: str) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "calib.json").write_text(json.dumps({Q: 12.0, K: 3.5}))
    (tmp_path / "r" / "recipe.json").write_text(json.dumps(
        {"cast": [{"match": r".*proj\.weight", "to": fmt, "input_scale": {"calibration": "calib.json"}}]}))
    convert(ckpt, tmp_path / "out", tmp_path / "r" / "recipe.json")
    ck = open_checkpoint(tmp_path / "out")
    fmax = float(torch.finfo(getattr(torch, fmt)).max)
    assert ck.read(f"{Q}.input_scale") == np.float32(12.0 / fmax)
    assert ck.read(f"{K}.input_scale") == np.float32(3.5 / fmax)


def test_refused(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for bad in ({"value": 1.0, "calibration": "x.json"}, {}, {"value": 0.0}):
        with pytest.raises(ConfigError):
            convert(ckpt, out, _rule(**bad))
    with pytest.raises(ConfigError, match="fp8"):
        convert(ckpt, out, {"cast": [{"match": ".*", "to": "bfloat16", "input_scale": {"value": 1.0}}]})
    with pytest.raises(CheckpointNotFoundError):
        convert(ckpt, out, _rule(calibration=str(tmp_path / "none.json")))
    calib = tmp_path / "c.json"
    cases = [({Q: 1.0}, "no activation abs-max for 'model.layers.0.self_attn.k_proj'"),
             ({Q: 1.0, K: 1.0, "model.layers.9.mlp": 2.0}, "no fp8 weight is cast for"),
             ({Q: -1.0, K: 1.0}, "bad values"), ([1, 2], "expected")]
    for content, msg in cases:
        calib.write_text(json.dumps(content))
        with pytest.raises(CheckpointError, match=msg):
            convert(ckpt, out, _rule(calibration=str(calib)))
    with pytest.raises(CheckpointError, match="beside a linear's `.weight`"):
        convert(ckpt, out, {"cast": [{"match": r"model\.norm\.weight|.*", "to": "float8_e4m3fn",
                                      "input_scale": {"value": 1.0}}], "rename": [{"pattern": "norm.weight",
                                                                                   "replace": "norm.w"}]})
    save(tmp_path / "has", {f"{Q}.weight": np.ones((2, 2), np.float32), f"{Q}.input_scale": np.float32(2)}, step=1)
    with pytest.raises(CheckpointError, match="already exists"):
        convert(tmp_path / "has", out, _rule(value=1.0))
    assert not out.exists() or not list_checkpoints(out)
