"""fp8 facts recorded at convert time and the ``quantization_config`` export-hf writes into
config.json (vLLM's ``fp8`` for per-tensor scales, ``fbgemm_fp8`` for per-channel ones); what is
refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, open_checkpoint
from fabric_hpc.checkpoint.convert import convert
from fabric_hpc.checkpoint.interop.hf import export_hf, import_hf
from tests.real import require_real

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
          "intermediate_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
          "num_hidden_layers": 2, "vocab_size": 40, "torch_dtype": "bfloat16"}
FP8_LINEARS = r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight"


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


@pytest.fixture
def hf_ckpt(tmp_path: Path) -> Path:
    """A tiny Llama-shaped safetensors model with config.json, imported into a fabric checkpoint."""
    from safetensors.numpy import save_file
    g = np.random.default_rng(0)
    shapes = {"self_attn.q_proj": (16, 16), "self_attn.k_proj": (8, 16), "self_attn.v_proj": (8, 16),
              "self_attn.o_proj": (16, 16), "mlp.gate_proj": (32, 16), "mlp.up_proj": (32, 16),
              "mlp.down_proj": (16, 32)}
    state = {"model.embed_tokens.weight": g.standard_normal((40, 16)), "model.norm.weight": np.ones(16),
             "lm_head.weight": g.standard_normal((40, 16))}
    for i in range(2):
        state |= {f"model.layers.{i}.{m}.weight": g.standard_normal(s) for m, s in shapes.items()}
        state |= {f"model.layers.{i}.{n}.weight": np.ones(16) for n in ("input_layernorm", "post_attention_layernorm")}
    src = tmp_path / "src"
    src.mkdir()
    save_file({k: v.astype(np.float32) for k, v in state.items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps(CONFIG))
    import_hf(src, tmp_path / "ck")
    return tmp_path / "ck"


def _cast(scale: str = "tensor", to: str = "float8_e4m3fn", **input_scale: float) -> dict:
    rule: dict = {"match": FP8_LINEARS, "to": to, "scale": scale}
    if input_scale:
        rule["input_scale"] = input_scale
    return {"cast": [rule, {"match": ".*", "to": "bfloat16"}]}


def _export(src: Path, out: Path, **kw: object) -> tuple[dict, dict]:
    info = export_hf(src, out, **kw)
    return info, json.loads((out / "config.json").read_text())


def _check_tensors(out: Path, quant: dict) -> None:
    """Every fp8 module has the tensors (and dtypes, shapes) vLLM registers for this config; the
    modules left out are exactly the listed ones and stay bf16."""
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    ignored = quant.get("ignored_layers", quant.get("modules_to_not_convert"))
    assert ignored == ["lm_head", "model.embed_tokens"]
    static = quant.get("activation_scheme") == "static"
    for i in range(2):
        for m in LINEARS:
            mod = f"model.layers.{i}.{m}"
            w, s = t[f"{mod}.weight"], t[f"{mod}.weight_scale"]
            assert w.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
            assert s.shape == ((w.shape[0], 1) if quant["quant_method"] == "fbgemm_fp8" else ())
            assert (f"{mod}.input_scale" in t) == static
            if static:
                assert t[f"{mod}.input_scale"].dtype == torch.float32 and t[f"{mod}.input_scale"].shape == ()
    for mod in ignored:
        assert t[f"{mod}.weight"].dtype == torch.bfloat16 and f"{mod}.weight_scale" not in t


@pytest.mark.parametrize("static", [False, True])
def test_per_tensor_fp8_export_writes_vllm_fp8_config(hf_ckpt: Path, tmp_path: Path, static: bool) -> None:
    convert(hf_ckpt, tmp_path / "q", _cast(**({"value": 0.5} if static else {})))
    facts = open_checkpoint(tmp_path / "q").manifest.user_metadata["quantization"]
    assert facts["weight_scale"] == "tensor" and facts["dtype"] == "float8_e4m3fn" and not facts["problems"]
    assert facts["activation_scheme"] == ("static" if static else "dynamic") and len(facts["modules"]) == 14
    info, cfg = _export(tmp_path / "q", tmp_path / "hf")
    want = {"quant_method": "fp8", "activation_scheme": "static" if static else "dynamic",
            "ignored_layers": ["lm_head", "model.embed_tokens"]}
    assert cfg["quantization_config"] == want and info["quantization_config"] == want
    assert {k: cfg[k] for k in CONFIG} == CONFIG  # the carried config is kept, quantization_config merged in
    _check_tensors(tmp_path / "hf", cfg["quantization_config"])
    # a convert of the fp8 checkpoint (renames only) records the facts again, from what it writes
    convert(tmp_path / "q", tmp_path / "q2", {"rename": [{"pattern": "^lm_head", "replace": "model.lm_head"}]})
    _, cfg2 = _export(tmp_path / "q2", tmp_path / "hf2")
    assert cfg2["quantization_config"]["ignored_layers"] == ["model.embed_tokens", "model.lm_head"]


def test_fp8_with_input_scales_on_nested_names(hf_ckpt: Path, tmp_path: Path) -> None:
    """A checkpoint saved from a nested dict names weights ``a/b/weight``: the input scale goes
    beside it (``a/b/input_scale``) and the export writes the same vLLM config as for dotted names
    (both were refused: 'not a linear's `.weight`')."""
    convert(hf_ckpt, tmp_path / "nested", {"rename": [{"pattern": r"\.", "replace": "/"}]})
    rule = {"match": r"model/layers/\d+/(self_attn|mlp)/\w+_proj/weight", "to": "float8_e4m3fn",
            "scale": "tensor", "input_scale": {"value": 0.5}}
    convert(tmp_path / "nested", tmp_path / "q", {"cast": [rule, {"match": ".*", "to": "bfloat16"}]})
    m = open_checkpoint(tmp_path / "q").manifest
    assert "model/layers/0/self_attn/q_proj/input_scale" in m.tensors
    facts = m.user_metadata["quantization"]
    assert not facts["problems"] and facts["activation_scheme"] == "static" and len(facts["modules"]) == 14
    _, cfg = _export(tmp_path / "q", tmp_path / "hf")
    assert cfg["quantization_config"] == {"quant_method": "fp8", "activation_scheme": "static",
                                          "ignored_layers": ["lm_head", "model.embed_tokens"]}
    _check_tensors(tmp_path / "hf", cfg["quantization_config"])


def test_per_channel_fp8_export_writes_fbgemm_config(hf_ckpt: Path, tmp_path: Path) -> None:
    convert(hf_ckpt, tmp_path / "q", _cast("channel"))
    _, cfg = _export(tmp_path / "q", tmp_path / "hf")
    assert cfg["quantization_config"] == {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
                                          "modules_to_not_convert": ["lm_head", "model.embed_tokens"]}
    _check_tensors(tmp_path / "hf", cfg["quantization_config"])


def test_non_fp8_export_has_no_quantization_config(hf_ckpt: Path, tmp_path: Path) -> None:
    convert(hf_ckpt, tmp_path / "bf", {"cast": [{"match": ".*", "to": "bfloat16"}]})
    assert "quantization" not in open_checkpoint(tmp_path / "bf").manifest.user_metadata
    info, cfg = _export(tmp_path / "bf", tmp_path / "hf")
    assert "quantization_config" not in cfg and info["quantization_config"] is None and cfg == CONFIG
    _, cfg = _export(hf_ckpt, tmp_path / "hf-plain")  # never converted
    assert cfg == CONFIG


def test_refusals(hf_ckpt: Path, tmp_path: Path) -> None:
    convert(hf_ckpt, tmp_path / "q", _cast())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**CONFIG, "quantization_config": {"quant_method": "fp8",
                                                                   "activation_scheme": "static"}}))
    with pytest.raises(CheckpointError, match="already has a different quantization_config"):
        export_hf(tmp_path / "q", tmp_path / "hf", config=other)
    assert not (tmp_path / "hf").exists()
    # --no-quantization-config: the given config.json is written as it is
    _, cfg = _export(tmp_path / "q", tmp_path / "hf", config=other, quantization_config=False)
    assert cfg["quantization_config"] == {"quant_method": "fp8", "activation_scheme": "static"}
    # the same quantization_config already there is kept
    same = tmp_path / "same.json"
    same.write_text(json.dumps({**CONFIG, "quantization_config": cfg["quantization_config"] | {
        "activation_scheme": "dynamic", "ignored_layers": ["lm_head", "model.embed_tokens"]}}))
    _export(tmp_path / "q", tmp_path / "hf-same", config=same)
    cases = [(_cast(to="float8_e5m2"), "float8_e5m2"),
             (_cast("channel", value=1.0), "per-channel weight scales with static input_scale"),
             ({"cast": [{"match": r".*q_proj\.weight", "to": "float8_e4m3fn", "input_scale": {"value": 1.0}},
                        {"match": FP8_LINEARS, "to": "float8_e4m3fn"}]}, "mix activation schemes"),
             ({"cast": [{"match": r".*q_proj\.weight", "to": "float8_e4m3fn", "scale": "channel"},
                        {"match": FP8_LINEARS, "to": "float8_e4m3fn"}]}, "mix scale kinds"),
             ({"cast": [{"match": r".*(q|o|gate|up|down)_proj\.weight", "to": "float8_e4m3fn"}]},
              "q_proj is fp8 but model.layers.0.self_attn.k_proj is not")]
    for n, (recipe, msg) in enumerate(cases):
        convert(hf_ckpt, tmp_path / f"bad{n}", recipe)
        with pytest.raises(CheckpointError, match=msg):
            export_hf(tmp_path / f"bad{n}", tmp_path / f"hf-bad{n}")
        assert not (tmp_path / f"hf-bad{n}").exists()
        export_hf(tmp_path / f"bad{n}", tmp_path / f"hf-raw{n}", quantization_config=False)  # tensors only


def test_cli_prints_and_refuses(hf_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main
    convert(hf_ckpt, tmp_path / "q", _cast())
    assert main(["ckpt", "export-hf", str(tmp_path / "q"), str(tmp_path / "hf")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert 'quantization_config (written into config.json): {"quant_method": "fp8"' in out
    convert(hf_ckpt, tmp_path / "e5", _cast(to="float8_e5m2"))
    assert main(["ckpt", "export-hf", str(tmp_path / "e5"), str(tmp_path / "hf5")]) == 3
    err = capsys.readouterr().err
    assert "float8_e5m2" in err and "fix:" in err and "Traceback" not in err
    assert main(["ckpt", "export-hf", str(tmp_path / "e5"), str(tmp_path / "hf5"), "--no-quantization-config"]) == 0
    assert "quantization_config" not in json.loads((tmp_path / "hf5" / "config.json").read_text())


def test_without_config_json_prints_what_to_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.checkpoint import save
    from fabric_hpc.cli.main import main
    save(tmp_path / "ck", {"model.layers.0.mlp.down_proj.weight": np.ones((4, 8), np.float32)}, step=0)
    convert(tmp_path / "ck", tmp_path / "q", _cast())
    info = export_hf(tmp_path / "q", tmp_path / "hf")
    assert not (tmp_path / "hf" / "config.json").exists() and info["config_written"] is False
    assert info["quantization_config"] == {"quant_method": "fp8", "activation_scheme": "dynamic", "ignored_layers": []}
    assert main(["ckpt", "export-hf", str(tmp_path / "q"), str(tmp_path / "hf2")]) == 0
    assert "NOT written: no config.json" in " ".join(capsys.readouterr().out.split())
