"""Shared contract tests for every :class:`~fabric_hpc.inference.engine.Engine` implementation.

Like zarr's ``StoreTests``: an engine's test module subclasses :class:`EngineContractTests` and
implements :meth:`make_engine`; pytest then runs the whole contract against it::

    class TestMyEngine(EngineContractTests):
        def make_engine(self):
            return MyEngine(...)

Requests are built with :func:`make_requests`, sized from the engine's own limits, so the same
tests fit a tiny CPU model and a large GPU engine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engine import Engine, EngineLimits, EngineRequest, EngineResult

__all__ = ["EngineContractTests", "drain", "make_requests"]


def make_requests(n: int, limits: EngineLimits, *, seed: int = 0, prefix: str = "r",
                  max_prompt: int | None = None, max_new: int = 8) -> list[EngineRequest]:
    """``n`` requests with random prompt lengths within ``limits`` (seeded)."""
    rng = random.Random(seed)
    top = min(max_prompt or limits.max_input_len, limits.max_input_len, 64)
    out = []
    for i in range(n):
        plen = rng.randint(1, top)
        new = max(1, min(rng.randint(1, max_new), limits.max_seq_len - plen))
        out.append(EngineRequest(f"{prefix}{i}", [rng.randrange(2, 1000) for _ in range(plen)], new))
    return out


def drain(engine: Engine, max_steps: int = 100_000) -> list[EngineResult]:
    """Step until the engine holds nothing; return every result in order."""
    results: list[EngineResult] = []
    for _ in range(max_steps):
        if not engine.active():
            return results
        results.extend(engine.step())
    raise AssertionError(f"engine still holds {engine.active()} sequences after {max_steps} steps")


class EngineContractTests:
    """Subclass and implement :meth:`make_engine` (a fresh engine per call)."""

    def make_engine(self) -> Engine:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    def engine(self) -> Iterator[Engine]:
        eng = self.make_engine()
        yield eng
        eng.close()

    def fitting(self, engine: Engine, n: int, **kw: object) -> list[EngineRequest]:
        lim = engine.limits
        reqs = make_requests(n, lim, **kw)  # type: ignore[arg-type]
        kept, total = [], 0
        for r in reqs:
            if len(kept) < lim.max_batch_size and total + r.reserve_tokens <= lim.kv_capacity_tokens:
                kept.append(r)
                total += r.reserve_tokens
        return kept

    def test_is_an_engine(self, engine: Engine) -> None:
        assert isinstance(engine, Engine)
        lim = engine.limits
        assert lim.max_input_len < lim.max_seq_len
        assert 1 <= lim.best_batch_size <= lim.max_batch_size

    def test_empty_step_and_add(self, engine: Engine) -> None:
        engine.add([])
        assert engine.active() == 0
        assert engine.step() == []

    def test_every_request_returned_once(self, engine: Engine) -> None:
        reqs = self.fitting(engine, 12)
        engine.add(reqs[: len(reqs) // 2])
        results = engine.step()  # may already finish requests (max_new_tokens=1)
        engine.add(reqs[len(reqs) // 2:])  # continuous batching: join while others run
        assert engine.active() <= len(reqs)
        results += drain(engine)
        ids = [r.id for r in results]
        assert sorted(ids) == sorted(r.id for r in reqs)
        by_id = {r.id: r for r in reqs}
        for res in results:
            assert 1 <= len(res.tokens) <= by_id[res.id].max_new_tokens
            assert all(isinstance(t, int) for t in res.tokens)
        assert engine.active() == 0

    def test_deterministic(self, engine: Engine) -> None:
        reqs = self.fitting(engine, 4, seed=7)
        engine.add(reqs)
        first = {r.id: r.tokens for r in drain(engine)}
        other = self.make_engine()
        try:
            other.add(list(reversed(reqs)))
            second = {r.id: r.tokens for r in drain(other)}
        finally:
            other.close()
        assert first == second

    def test_rejects_over_batch_size(self, engine: Engine) -> None:
        lim = engine.limits
        reqs = [EngineRequest(f"b{i}", [5], 1) for i in range(lim.max_batch_size + 1)]
        with pytest.raises(ConfigError):
            engine.add(reqs)
        assert engine.active() == 0

    def test_rejects_too_long_and_duplicates(self, engine: Engine) -> None:
        lim = engine.limits
        with pytest.raises(ConfigError):
            engine.add([EngineRequest("long", [3] * (lim.max_input_len + 1), 1)])
        with pytest.raises(ConfigError):
            engine.add([EngineRequest("seq", [3], lim.max_seq_len)])
        engine.add([EngineRequest("dup", [3, 4], 2)])
        with pytest.raises(ConfigError):
            engine.add([EngineRequest("dup", [3, 4], 2)])
        assert engine.active() == 1

    def test_close_is_idempotent(self, engine: Engine) -> None:
        engine.close()
        engine.close()
        with pytest.raises(ConfigError):
            engine.add([EngineRequest("x", [1], 1)])
