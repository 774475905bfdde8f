"""Fixtures: a tiny Hugging Face Llama saved with save_pretrained, prepared as a PyTorch engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fabric_hpc.inference.engines import PRESETS, prepare_pytorch_engine  # noqa: E402

TINY = PRESETS["tiny"]
LIMITS = {"max_batch_size": 8, "max_input_len": 48, "max_seq_len": 96, "max_num_tokens": 256}


def hf_tiny(seed: int = 0) -> Any:
    """transformers' LlamaForCausalLM on the tiny shape, norms perturbed so they are tested too."""
    cfg = {k: v for k, v in TINY.hf_config().items() if k not in ("architectures", "torch_dtype")}
    config = transformers.LlamaConfig(**cfg, attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:  # larger weights than HF's init: logits far from uniform, a sharper check
                p.mul_(4.0)
    return model


@pytest.fixture(scope="session")
def hf_model() -> Any:
    return hf_tiny()


@pytest.fixture(scope="session")
def hf_dir(hf_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hf-tiny")
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def engine_config(hf_dir: Path) -> dict[str, Any]:
    """Nine-field config of the saved model, prepared as a float32 PyTorch engine."""
    return prepare_pytorch_engine(hf_dir, dtype="float32", **LIMITS)


def write_config(tmp: Path, config: dict[str, Any], **changes: Any) -> Path:
    path = tmp / "engine.json"
    path.write_text(json.dumps({**config, **changes}))
    return path
