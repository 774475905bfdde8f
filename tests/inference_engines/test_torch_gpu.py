"""On a GPU: the engine contract in bfloat16 on CUDA (skips where there is no GPU; GPUs are the
NVML component allowed to be absent in CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_hpc.inference import build_engine, load_engine_config
from fabric_hpc.inference.engines import TorchEngine, prepare_pytorch_engine
from tests.real import require_real

from .conftest import LIMITS
from fabric_hpc.inference.testing import EngineContractTests as Contract


@pytest.mark.gpu
class TestTorchEngineCuda(Contract):
    @pytest.fixture(autouse=True)
    def _cuda(self, tmp_path: Path) -> None:
        require_real("nvml", torch.cuda.is_available(), "no CUDA GPU on this machine")
        cfg: dict[str, Any] = prepare_pytorch_engine(tmp_path / "m", preset="tiny",
                                                     dtype="bfloat16", **LIMITS)
        self.config = load_engine_config(cfg)

    def make_engine(self) -> TorchEngine:
        return build_engine(self.config, device="cuda:0")  # type: ignore[return-value]


@pytest.mark.gpu
def test_cuda_graph_decode_gives_the_eager_tokens(tmp_path: Path) -> None:
    """The real capture: graphs built and self-checked, greedy tokens equal the eager pass's
    (float32, so rounding cannot flip a near-tie)."""
    from fabric_hpc.inference.engine import EngineRequest
    from fabric_hpc.inference.testing import drain, make_requests

    require_real("nvml", torch.cuda.is_available(), "no CUDA GPU on this machine")
    config = load_engine_config(prepare_pytorch_engine(tmp_path / "m", preset="tiny",
                                                       dtype="float32", **LIMITS))
    got = {}
    for graphs in (False, True):
        engine = build_engine(config, device="cuda:0", stop_at_eos=False, cuda_graphs=graphs)
        if graphs:
            assert engine.graph_stats is not None and engine.graph_stats["fallback"] is None
        reqs = [EngineRequest(r.id, [t % 1024 for t in r.prompt], r.max_new_tokens)
                for r in make_requests(12, engine.limits, seed=7, max_prompt=40, max_new=30)]
        engine.add(reqs[:engine.limits.max_batch_size])
        out = {x.id: x.tokens for x in drain(engine)}
        engine.add(reqs[engine.limits.max_batch_size:])
        out.update({x.id: x.tokens for x in drain(engine)})
        engine.close()
        got[graphs] = out
    assert got[True] == got[False]
