"""The simulated engine passes the shared engine contract; its cost model behaves as documented."""

from __future__ import annotations

import pytest

from fabric_hpc.inference import (
    H100_1B,
    CostModel,
    EngineLimits,
    EngineRequest,
    SimulatedEngine,
    VirtualClock,
)
from fabric_hpc.inference.testing import EngineContractTests, drain

from .builders import SMALL


class TestSimulatedEngine(EngineContractTests):
    def make_engine(self) -> SimulatedEngine:
        return SimulatedEngine(SMALL, clock=VirtualClock())


def test_step_time_follows_cost_model() -> None:
    clock = VirtualClock()
    eng = SimulatedEngine(SMALL, H100_1B, clock=clock)
    eng.add([EngineRequest("a", [1] * 10, 2), EngineRequest("b", [1] * 30, 2)])
    eng.step()  # prefill of one group padded to 30, two decodes, context 40
    expected = H100_1B.step_seconds(60, 2, 40)
    assert clock.now() == pytest.approx(expected)
    assert eng.padded_prefill_tokens == 60 and eng.prompt_tokens == 40
    eng.step()  # decode only: context is now 42
    assert clock.now() == pytest.approx(expected + H100_1B.step_seconds(0, 2, 42))
    assert eng.active() == 0


def test_decode_step_grows_with_batch_and_context() -> None:
    cost = H100_1B
    small, big = cost.step_seconds(0, 8, 8 * 200), cost.step_seconds(0, 256, 256 * 600)
    assert big > small > cost.base_s
    assert cost.step_seconds(0, 0, 0) == 0.0
    # prefill-heavy steps cost more per token than decode-only steps cost per sequence
    assert cost.step_seconds(8192, 0, 0) > cost.step_seconds(0, 256, 0)


def test_kv_capacity_enforced() -> None:
    lim = EngineLimits(max_batch_size=8, max_num_tokens=512, max_input_len=64, max_seq_len=100,
                       kv_capacity_tokens=150)
    eng = SimulatedEngine(lim, clock=VirtualClock())
    eng.add([EngineRequest("a", [1] * 60, 40)])
    from fabric_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match="KV"):
        eng.add([EngineRequest("b", [1] * 60, 40)])
    drain(eng)
    eng.add([EngineRequest("b", [1] * 60, 40)])  # room again once "a" finished
    assert eng.active() == 1


def test_eos_stops_early() -> None:
    eng = SimulatedEngine(SMALL, CostModel(0, 0, 0, 0), clock=VirtualClock(), vocab_size=2,
                          eos_token=1)
    eng.add([EngineRequest(f"r{i}", [1, 2], 30) for i in range(8)])
    results = drain(eng)
    assert any(r.finish_reason == "stop" and len(r.tokens) < 30 for r in results)
    assert all(r.tokens[-1] == 1 for r in results if r.finish_reason == "stop")
