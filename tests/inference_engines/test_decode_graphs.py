"""The decode-graph bookkeeping (buckets, static buffers, spare rows, the self-check, the
fallback) on the CPU. CUDA graphs cannot exist here, so capture is replaced by a stand-in that
re-runs the captured function into the same static output; on a GPU the real capture runs
(test_torch_gpu.py, and the GPU check's fabric_1rank/eager_decode parts)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fabric_hpc.inference import build_engine, load_engine_config
from fabric_hpc.inference.engines import decode_graphs
from fabric_hpc.inference.engines.decode_graphs import DecodeGraphs, buckets
from fabric_hpc.inference.testing import drain, make_requests
from fabric_hpc.inference.engine import EngineRequest


def test_buckets_are_powers_of_two_then_the_limit() -> None:
    assert buckets(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert buckets(200) == [1, 2, 4, 8, 16, 32, 64, 128, 200]
    assert buckets(1280, 256) == [256, 512, 1024, 1280]
    assert buckets(96, 96) == [96]
    assert buckets(1) == [1]


def _stand_in(monkeypatch: pytest.MonkeyPatch, noise: float = 0.0) -> None:
    """Capture = remember the function; replay = run it again into the static output."""
    def record(fn: Any, pool: Any) -> tuple[Any, torch.Tensor]:
        out = fn()
        return (lambda: out.copy_(fn() + noise)), out

    monkeypatch.setattr(DecodeGraphs, "_warm_up", lambda self: None)
    monkeypatch.setattr(DecodeGraphs, "_record", staticmethod(record))
    monkeypatch.setattr(DecodeGraphs, "_release", lambda self: None)
    monkeypatch.setattr(decode_graphs, "MIN_CONTEXT", 16)


def test_graph_decode_gives_the_eager_tokens(engine_config: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Same requests joining mid-decode, eager vs the graph path (row and context buckets,
    spare rows, tokens picked by slot): identical tokens."""
    _stand_in(monkeypatch)
    config = load_engine_config(engine_config)
    got = {}
    for graphs in (False, True):
        engine = build_engine(config, device="cpu", stop_at_eos=False)
        reqs = [EngineRequest(r.id, [t % 1024 for t in r.prompt], r.max_new_tokens)  # same seed
                for r in make_requests(14, engine.limits, seed=7, max_prompt=40, max_new=30)]
        if graphs:
            engine._graphs = DecodeGraphs(engine.model, engine.cache, engine.limits.max_batch_size)
            assert engine._graphs.ready and engine._graphs.max_rel_diff == 0.0
            assert engine._graphs.ctx_buckets == [16, 32, 64, 96]
        out, queue = {}, list(reqs)
        while queue or engine.active():
            room = engine.limits.max_batch_size - engine.active()
            engine.add([queue.pop(0) for _ in range(min(room, 3, len(queue)))])
            out.update({x.id: x.tokens for x in engine.step()})
        out.update({x.id: x.tokens for x in drain(engine)})
        engine.close()
        got[graphs] = out
    assert got[True] == got[False] and len(got[True]) == len(reqs)


def test_a_graph_that_differs_from_eager_falls_back(engine_config: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, noise=1.0)
    engine = build_engine(load_engine_config(engine_config), device="cpu", stop_at_eos=False)
    graphs = DecodeGraphs(engine.model, engine.cache, engine.limits.max_batch_size)
    assert not graphs.ready
    assert "differs from the eager pass" in (graphs.fallback or "")
    assert graphs.stats()["graphs"] == 0
    engine.close()
