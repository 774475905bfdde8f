"""Fail-closed engine config: nine required fields, no extras, each checked against the artefact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inference import (
    EngineConfig,
    EngineConfigError,
    SimulatedEngine,
    build_engine,
    load_engine_config,
    write_simulated_artefact,
)
from fabric_hpc.inference.engine import ARTEFACT_FIELDS

from .builders import SMALL

FIELDS = list(EngineConfig.model_fields)


@pytest.fixture
def good(tmp_path: Path) -> dict:
    return write_simulated_artefact(tmp_path / "eng", limits=SMALL)


def test_exactly_nine_required_fields_without_defaults() -> None:
    assert len(FIELDS) == 9
    assert all(f.is_required() for f in EngineConfig.model_fields.values())


def test_good_config_loads_and_builds(good: dict) -> None:
    cfg = load_engine_config(good)
    eng = build_engine(cfg)
    assert isinstance(eng, SimulatedEngine)
    assert eng.limits.max_batch_size == SMALL.max_batch_size
    assert eng.limits.kv_capacity_tokens == SMALL.kv_capacity_tokens


@pytest.mark.parametrize("field", FIELDS)
def test_each_missing_field_is_named(good: dict, field: str) -> None:
    data = {k: v for k, v in good.items() if k != field}
    with pytest.raises(ConfigError, match=f"missing required field {field}"):
        load_engine_config(data)


def test_unknown_key_rejected_with_valid_keys(good: dict) -> None:
    with pytest.raises(ConfigError, match="unknown key 'max_beam_width'.*valid keys: architecture"):
        load_engine_config({**good, "max_beam_width": 1})


@pytest.mark.parametrize("field", ARTEFACT_FIELDS)
def test_each_mismatch_with_artefact_refuses(good: dict, field: str) -> None:
    value = good[field]
    other = {"architecture": "MistralForCausalLM", "dtype": "float16"}.get(field)
    bad = {**good, field: other if other is not None else value + 1}
    with pytest.raises(EngineConfigError) as err:
        load_engine_config(bad)
    assert f"{field}: config says" in str(err.value)
    assert [f for f in ARTEFACT_FIELDS if f"{f}: config says" in str(err.value)] == [field]


def test_all_mismatches_reported_at_once(good: dict) -> None:
    bad = {**good, "max_batch_size": 999, "max_seq_len": 999}
    with pytest.raises(EngineConfigError) as err:
        load_engine_config(bad)
    assert "max_batch_size" in str(err.value) and "max_seq_len" in str(err.value)


@pytest.mark.parametrize("field,value", [("max_batch_size", "16"), ("max_batch_size", 0),
                                         ("dtype", "float64"), ("engine", "vllm"),
                                         ("engine_dir", ""), ("tensor_parallel_size", 1.0)])
def test_wrong_types_and_values(good: dict, field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        load_engine_config({**good, field: value})


def test_missing_artefact(good: dict, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_engine_config({**good, "engine_dir": str(tmp_path / "nowhere")})


def test_file_config_relative_engine_dir_and_yaml(good: dict, tmp_path: Path) -> None:
    import yaml

    rel = {**good, "engine_dir": "eng"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(rel))
    cfg = load_engine_config(tmp_path / "c.yaml")
    assert Path(cfg.engine_dir) == (tmp_path / "eng").resolve()
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ConfigError, match="(?i)not valid json"):
        load_engine_config(tmp_path / "c.json")


def test_tensorrt_llm_config_json_checked_and_clear_error_without_runtime(tmp_path: Path) -> None:
    eng = tmp_path / "trt"
    eng.mkdir()
    (eng / "config.json").write_text(json.dumps({
        "version": "0.12.0",
        "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                              "mapping": {"world_size": 2, "tp_size": 2, "pp_size": 1}},
        "build_config": {"max_batch_size": 256, "max_input_len": 1024, "max_seq_len": 2048,
                         "max_num_tokens": 8192}}))
    cfg = {"engine": "tensorrt_llm", "engine_dir": str(eng), "architecture": "LlamaForCausalLM",
           "dtype": "bfloat16", "max_batch_size": 256, "max_input_len": 1024,
           "max_seq_len": 2048, "max_num_tokens": 8192, "tensor_parallel_size": 2}
    loaded = load_engine_config(cfg)
    with pytest.raises(EngineConfigError, match="tensor_parallel_size: config says 1"):
        load_engine_config({**cfg, "tensor_parallel_size": 1})
    try:
        import tensorrt_llm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError):  # a clear error, never an ImportError traceback
            build_engine(loaded)
