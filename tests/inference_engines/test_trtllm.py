"""TensorRT-LLM adapter: clear errors without tensorrt_llm, config checked against the engine
directory's config.json, the engine contract over a fake executor API here and over the real
one where tensorrt_llm imports (FABRIC_TRTLLM_ENGINE_DIR names a built engine)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.inference import EngineConfigError, EngineRequest, build_engine, load_engine_config
from fabric_hpc.inference.engines.trtllm import TrtllmEngine, TrtllmUnavailable
from fabric_hpc.inference.testing import drain
from tests.real import require_real

from . import fake_trtllm
from fabric_hpc.inference.testing import EngineContractTests as Contract

BUILD = {"max_batch_size": 8, "max_input_len": 64, "max_seq_len": 128, "max_num_tokens": 512}
HAVE_TRTLLM = importlib.util.find_spec("tensorrt_llm") is not None


def trt_engine_dir(path: Path, *, tp: int = 1, **build: Any) -> dict[str, Any]:
    """An engine directory config.json in TensorRT-LLM's layout; returns the matching config."""
    path.mkdir(parents=True, exist_ok=True)
    b = {**BUILD, **build}
    (path / "config.json").write_text(json.dumps({
        "version": "0.12.0",
        "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                              "mapping": {"world_size": tp, "tp_size": tp, "pp_size": 1}},
        "build_config": {**b, "max_beam_width": 1}}))
    return {"engine": "tensorrt_llm", "engine_dir": str(path), "architecture": "LlamaForCausalLM",
            "dtype": "bfloat16", "tensor_parallel_size": tp, **b}


@pytest.mark.skipif(HAVE_TRTLLM, reason="tensorrt_llm is installed here")
def test_absent_tensorrt_llm_is_a_clear_error(tmp_path: Path) -> None:
    config = load_engine_config(trt_engine_dir(tmp_path / "e"))
    with pytest.raises(TrtllmUnavailable) as err:
        build_engine(config)
    assert isinstance(err.value, ExternalError)
    assert "tensorrt_llm does not import" in str(err.value)
    assert "pip install tensorrt_llm" in (err.value.hint or "")


def test_config_checked_against_engine_config_json(tmp_path: Path) -> None:
    cfg = trt_engine_dir(tmp_path / "e", max_num_tokens=1024)
    with pytest.raises(EngineConfigError) as err:
        load_engine_config({**cfg, "max_num_tokens": 512, "dtype": "float16"})
    text = str(err.value)
    assert "max_num_tokens: config says 512" in text and "says 1024" in text and "dtype" in text
    with pytest.raises(ConfigError, match="does not exist"):
        load_engine_config({**cfg, "engine_dir": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="unknown key .kv_cache_fraction"):
        load_engine_config({**cfg, "kv_cache_fraction": 0.9})
    tp2 = trt_engine_dir(tmp_path / "tp2", tp=2)
    with pytest.raises(ConfigError, match="one single-GPU executor per MPI rank"):
        build_engine(load_engine_config(tp2), api=fake_trtllm)


def test_one_executor_per_rank_with_its_own_participants(tmp_path: Path) -> None:
    config = load_engine_config(trt_engine_dir(tmp_path / "e"))
    engine = build_engine(config, api=fake_trtllm, local_rank=1, rank=5)
    pc = engine.executor.config.parallel_config
    assert pc.participant_ids == [5] and pc.device_ids == [1]
    assert pc.communication_mode is fake_trtllm.CommunicationMode.LEADER
    assert engine.limits.max_batch_size == 8 and engine.limits.max_num_tokens == 512
    engine.close()
    assert not engine.executor.alive
    os.environ["PMI_RANK"] = "3"
    try:
        engine = build_engine(config, api=fake_trtllm)
        assert engine.executor.config.parallel_config.participant_ids == [3]
    finally:
        del os.environ["PMI_RANK"]
        engine.close()


def test_iteration_stats_and_end_id(tmp_path: Path) -> None:
    config = load_engine_config(trt_engine_dir(tmp_path / "e"))
    engine = build_engine(config, api=fake_trtllm, poll_s=0.0)
    engine.add([EngineRequest("a", [1, 2, 3], 20)])
    tokens = drain(engine)[0].tokens
    assert len(engine.iteration_stats) == 20
    stopper = build_engine(config, api=fake_trtllm, end_id=tokens[2], poll_s=0.0)
    stopper.add([EngineRequest("a", [1, 2, 3], 20)])
    res = drain(stopper)[0]
    assert res.finish_reason == "stop" and res.tokens == tokens[: tokens.index(tokens[2]) + 1]


class TestTrtllmAdapterOverFakeExecutor(Contract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.config = load_engine_config(trt_engine_dir(tmp_path / "engine"))

    def make_engine(self) -> TrtllmEngine:
        return build_engine(self.config, api=fake_trtllm, poll_s=0.0)  # type: ignore[return-value]


class TestTrtllmAdapterReal(Contract):
    """The contract against real TensorRT-LLM (a GPU node with a built engine)."""

    @pytest.fixture(autouse=True)
    def _real(self) -> None:
        require_real("tensorrt_llm", HAVE_TRTLLM, "tensorrt_llm is not installed (no wheel here)")
        engine_dir = os.environ.get("FABRIC_TRTLLM_ENGINE_DIR")
        require_real("tensorrt_llm", bool(engine_dir),
                     "set FABRIC_TRTLLM_ENGINE_DIR to a built engine directory")
        artefact = json.loads((Path(engine_dir) / "config.json").read_text())
        pre, build = artefact["pretrained_config"], artefact["build_config"]
        self.config = load_engine_config({
            "engine": "tensorrt_llm", "engine_dir": engine_dir,
            "architecture": pre["architecture"], "dtype": pre["dtype"],
            "tensor_parallel_size": pre.get("mapping", {}).get("tp_size", 1),
            **{k: build[k] for k in BUILD}})

    def make_engine(self) -> TrtllmEngine:
        return build_engine(self.config)  # type: ignore[return-value]
