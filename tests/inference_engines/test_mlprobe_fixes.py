"""What an ML engineer new to fabric met (probe, 2026-12-07): a trainer's checkpoint whose carried
Hugging Face config has no ``architectures`` (``LlamaConfig(...).to_dict()``: transformers adds the
key only in ``save_pretrained``) was prepared, and then every run refused it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import load_engine_config
from fabric_hpc.inference.engines import prepare_pytorch_engine
from fabric_hpc.inference.engines.spec import ARCHITECTURE, PRESETS, LlamaSpec, hf_weight_names


def test_a_carried_config_without_architectures_serves_as_the_llama_prepare_promised(tmp_path: Path) -> None:
    spec = PRESETS["tiny"]
    hf = spec.hf_config("float32")
    del hf["architectures"]  # as LlamaConfig(...).to_dict() gives it
    state = {"model": {n: np.zeros(s, np.float32) for n, s in hf_weight_names(spec).items()}}
    save(tmp_path / "ck", state, step=10, metadata={"hf_files": {"config.json": hf}})
    cfg = prepare_pytorch_engine(tmp_path / "eng", checkpoint=tmp_path / "ck", dtype="float32",
                                 max_batch_size=4, max_input_len=32, max_seq_len=64, max_num_tokens=128)
    assert cfg["architecture"] == ARCHITECTURE
    loaded = load_engine_config(cfg)  # raised: "architecture: the artefact does not state it"
    assert loaded.architecture == ARCHITECTURE


def test_a_config_without_architectures_of_another_model_type_is_refused() -> None:
    """Read as Llama only when nothing says otherwise: ``Qwen2Config().to_dict()`` (no ``architectures``,
    ``model_type`` qwen2; its q/k/v projections have biases) is no Llama."""
    hf = PRESETS["tiny"].hf_config("float32")
    del hf["architectures"]
    assert LlamaSpec.from_hf_config(hf) == LlamaSpec.from_hf_config({**hf, "architectures": [ARCHITECTURE]})
    with pytest.raises(ConfigError, match=r"model_type 'qwen2' and no architectures \(only llama\)"):
        LlamaSpec.from_hf_config({**hf, "model_type": "qwen2"})


def test_an_artefact_of_another_model_type_states_no_architecture(tmp_path: Path) -> None:
    """The artefact's architecture follows the same rule: a qwen2 config without ``architectures``
    states none (it read as LlamaForCausalLM before)."""
    from fabric_hpc.inference.engines.artefact import read_pytorch_artefact

    prepare_pytorch_engine(tmp_path / "eng", preset="tiny", dtype="float32", max_batch_size=4,
                           max_input_len=32, max_seq_len=64, max_num_tokens=128)
    conf = tmp_path / "eng" / "config.json"
    hf = json.loads(conf.read_text())
    del hf["architectures"]
    conf.write_text(json.dumps(hf))
    assert read_pytorch_artefact(tmp_path / "eng")["architecture"] == ARCHITECTURE
    conf.write_text(json.dumps({**hf, "model_type": "qwen2"}))
    assert read_pytorch_artefact(tmp_path / "eng")["architecture"] is None
