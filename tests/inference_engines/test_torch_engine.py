"""The PyTorch engine: engine contract, greedy tokens equal transformers' generate(), continuous
batching changes nothing, artefact loading fails closed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inference import EngineConfigError, EngineRequest, build_engine, load_engine_config
from fabric_hpc.inference.engines import TorchEngine, prepare_pytorch_engine
from fabric_hpc.inference.testing import drain, make_requests

from .conftest import LIMITS, write_config
from fabric_hpc.inference.testing import EngineContractTests as Contract


@pytest.fixture(scope="module")
def preset_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return prepare_pytorch_engine(tmp_path_factory.mktemp("tiny-random"), preset="tiny",
                                  dtype="float32", seed=3, **LIMITS)


class TestTorchEngine(Contract):
    @pytest.fixture(autouse=True)
    def _config(self, preset_config: dict[str, Any]) -> None:
        self.config = load_engine_config(preset_config)

    def make_engine(self) -> TorchEngine:
        return build_engine(self.config, device="cpu")  # type: ignore[return-value]


def hf_greedy(hf_model: Any, prompt: list[int], new: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                min_new_tokens=new, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_engine_tokens_equal_transformers_generate(engine_config: dict[str, Any],
                                                   hf_model: Any) -> None:
    """Weights loaded from save_pretrained; ragged prompts in one group; greedy == generate()."""
    engine = build_engine(load_engine_config(engine_config), device="cpu", stop_at_eos=False)
    reqs = make_requests(6, engine.limits, seed=11, max_new=12)
    reqs = [EngineRequest(r.id, [t % 1024 for t in r.prompt], r.max_new_tokens) for r in reqs]
    engine.add(reqs)
    got = {r.id: r.tokens for r in drain(engine)}
    engine.close()
    for r in reqs:
        assert got[r.id] == hf_greedy(hf_model, list(r.prompt), r.max_new_tokens), r.id


def test_continuous_batching_equals_alone(engine_config: dict[str, Any]) -> None:
    """Requests joining and leaving between steps get exactly the tokens they get alone."""
    config = load_engine_config(engine_config)
    engine = build_engine(config, device="cpu", stop_at_eos=False)
    lim = engine.limits
    reqs = [EngineRequest(r.id, [t % 1024 for t in r.prompt], r.max_new_tokens)
            for r in make_requests(20, lim, seed=5, max_prompt=40, max_new=20)]
    alone = {}
    for r in reqs:
        engine.add([r])
        alone.update({x.id: x.tokens for x in drain(engine)})
    together, queue, steps = {}, list(reqs), 0
    while queue or engine.active():
        room = lim.max_batch_size - engine.active()
        group = [queue.pop(0) for _ in range(min(room, 3, len(queue)))]
        engine.add(group)  # a new group joins while earlier ones are mid-decode
        together.update({x.id: x.tokens for x in engine.step()})
        steps += 1
    engine.close()
    assert together == alone
    assert steps < sum(r.max_new_tokens for r in reqs)  # sequences really were batched


def test_attention_leaves_out_cudnn_unless_asked(preset_config: dict[str, Any]) -> None:
    """Every pass runs with torch's cuDNN attention backend off (a cuDNN graph per new prefill
    shape costs tens of ms of host time on Hopper), flash/efficient/math on; ``sdpa_cudnn``
    leaves torch's own choice; the tokens do not depend on it here (the CPU has no cuDNN)."""
    seen: dict[bool, set[tuple[str, bool, bool]]] = {}
    tokens = {}
    for allow in (False, True):
        engine = build_engine(load_engine_config(preset_config), device="cpu", stop_at_eos=False,
                              sdpa_cudnn=allow)
        model = engine.model

        def spy(name: str, fn: Any, allow: bool = allow) -> Any:
            def call(*a: Any, **k: Any) -> Any:
                seen.setdefault(allow, set()).add(
                    (name, torch.backends.cuda.cudnn_sdp_enabled(),
                     torch.backends.cuda.flash_sdp_enabled()))
                return fn(*a, **k)
            return call

        model.prefill, engine._decode = spy("prefill", model.prefill), spy("decode", engine._decode)
        engine.add([EngineRequest("a", [5, 6, 7, 8], 6), EngineRequest("b", [9, 10], 6)])
        tokens[allow] = {r.id: r.tokens for r in drain(engine)}
        engine.close()
    assert seen[False] == {("prefill", False, True), ("decode", False, True)}
    assert seen[True] == {("prefill", torch.backends.cuda.cudnn_sdp_enabled(), True),
                          ("decode", torch.backends.cuda.cudnn_sdp_enabled(), True)}
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored after each step
    assert tokens[False] == tokens[True]


def test_eos_stops_a_sequence(preset_config: dict[str, Any]) -> None:
    engine = build_engine(load_engine_config(preset_config), device="cpu")
    assert isinstance(engine, TorchEngine)
    free = build_engine(load_engine_config(preset_config), device="cpu", stop_at_eos=False)
    req = EngineRequest("x", [5, 6, 7], 30)
    free.add([req])
    tokens = drain(free)[0].tokens
    k = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])
    engine.eos = tokens[k]  # pretend the first new token after position 0 is EOS
    engine.add([req])
    res = drain(engine)[0]
    assert res.tokens == tokens[:k + 1] and res.finish_reason == "stop"


def test_rejects_tokens_outside_vocabulary(preset_config: dict[str, Any]) -> None:
    engine = build_engine(load_engine_config(preset_config), device="cpu")
    with pytest.raises(ConfigError, match="vocabulary"):
        engine.add([EngineRequest("v", [1, 3000], 2)])
    assert engine.active() == 0


def test_config_mismatch_names_the_field(engine_config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError) as err:
        load_engine_config(write_config(tmp_path, engine_config, max_batch_size=16,
                                        dtype="bfloat16"))
    assert "max_batch_size" in str(err.value) and "dtype" in str(err.value)
    assert "max_seq_len" not in str(err.value)
    with pytest.raises(EngineConfigError, match="architecture"):
        load_engine_config({**engine_config, "architecture": "MistralForCausalLM"})


def test_bad_weights_dirs(hf_dir: Path, tmp_path: Path) -> None:
    # no fabric_engine.json: the loader says how to prepare the directory
    bare = tmp_path / "bare"
    shutil.copytree(hf_dir, bare)
    (bare / "fabric_engine.json").unlink(missing_ok=True)
    cfg = {"engine": "pytorch", "engine_dir": str(bare), "architecture": "LlamaForCausalLM",
           "dtype": "float32", "tensor_parallel_size": 1, **LIMITS}
    with pytest.raises(NotFoundError, match="fabric_engine.json"):
        load_engine_config(cfg)
    with pytest.raises(NotFoundError):
        load_engine_config({**cfg, "engine_dir": str(tmp_path / "absent")})
    # weights that do not match config.json (a wider model claimed)
    prepare_pytorch_engine(bare, dtype="float32", **LIMITS)
    doc = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**doc, "intermediate_size": 160}))
    with pytest.raises(ConfigError, match="mlp.gate_proj.weight: shape"):
        build_engine(load_engine_config(cfg), device="cpu")
    # a corrupt safetensors file
    (bare / "config.json").write_text(json.dumps(doc))
    (bare / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="safetensors"):
        build_engine(load_engine_config(cfg), device="cpu")
    # no weights at all
    (bare / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no \\*.safetensors"):
        build_engine(load_engine_config(cfg), device="cpu")
    with pytest.raises(ConfigError, match="no \\*.safetensors"):
        prepare_pytorch_engine(bare, dtype="float32", **LIMITS)


def test_unsupported_model_config(tmp_path: Path) -> None:
    cfg = prepare_pytorch_engine(tmp_path / "m", preset="tiny", dtype="float32", **LIMITS)
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "rope_parameters": {"rope_type": "yarn", "factor": 4.0},
                                "hidden_act": "gelu"}))
    with pytest.raises(ConfigError, match="rope type 'yarn'.*") as err:
        build_engine(load_engine_config(cfg), device="cpu")
    assert "hidden_act" in str(err.value)
    with pytest.raises(ConfigError, match="preset"):
        prepare_pytorch_engine(tmp_path / "n", preset="70b", dtype="float32", **LIMITS)
    with pytest.raises(ConfigError, match="max_position_embeddings"):  # at prepare, not at the first run
        prepare_pytorch_engine(tmp_path / "p", preset="tiny", dtype="float32", **{**LIMITS, "max_seq_len": 5000})
    assert not (tmp_path / "p" / "fabric_engine.json").exists()


def test_importing_the_harness_does_not_import_torch() -> None:
    code = ("import sys, fabric_hpc.inference, fabric_hpc.inference.engines; "
            "from fabric_hpc.inference import load_engine_config; "
            "print('torch' in sys.modules, 'tensorrt_llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_kv_cache_larger_than_free_memory_is_refused_before_allocating(tmp_path: Path) -> None:
    """On the CPU as on a GPU: weights + KV cache over the free memory is a named error (it was
    torch's 'DefaultCPUAllocator: can't allocate memory' traceback, or the OOM killer)."""
    from fabric_hpc.errors import ExternalError
    cfg = prepare_pytorch_engine(tmp_path / "m", preset="tiny", dtype="float32",
                                 **{**LIMITS, "max_batch_size": 10**9})
    with pytest.raises(ExternalError, match=r"cpu: weights \+ KV cache need .* GiB free") as err:
        build_engine(load_engine_config(cfg), device="cpu")
    assert "max_batch_size" in err.value.hint
