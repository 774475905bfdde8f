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
