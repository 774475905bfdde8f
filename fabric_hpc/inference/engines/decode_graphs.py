"""CUDA graphs of the PyTorch engine's decode pass: one launch per step instead of ~50 per layer.

Eager decode of a 16-layer model issues ~800 kernels per step from Python; on the first lent
H200 that left the GPU idle 82 % of the time (docs/benchmarks.md, "GPU check"). Here each
``(rows, context)`` bucket is captured once when the engine is built and replayed each step:

* rows: powers of two up to the engine's batch size (the batch size itself is the last bucket);
  the spare rows of a bucket decode token 0 at position 0 of slots no running sequence holds
  (free slots, or slots whose prefill runs after the decode in the same step and overwrites
  position 0), exactly like the eager pass's holes;
* context: powers of two from 256 up to the cache length (the cache length itself last), so a
  step never attends to more than twice the positions it needs.

Inputs go through static device buffers (tokens, positions); all graphs share one memory pool.
After capture, every graph is replayed once and its logits are compared with the eager pass on
the same inputs (``check``); a capture error or a mismatch leaves the engine on the eager pass
with the reason in :attr:`DecodeGraphs.fallback` (the engine logs it as an event).

Imported only by :mod:`.pytorch` on CUDA devices (it imports torch).
"""

from __future__ import annotations

import bisect
import time
from typing import Any

import torch

__all__ = ["DecodeGraphs", "buckets"]

MIN_CONTEXT = 256
# graph vs eager logits on the same inputs: |g - e| <= RTOL * max|e| + ATOL (bf16 kernels may
# pick other algorithms under capture; a stale or wrong buffer is off by the logits' own scale)
RTOL, ATOL = 0.02, 1e-3


def buckets(limit: int, start: int = 1) -> list[int]:
    """Powers of two from ``start`` below ``limit``, then ``limit`` itself."""
    out, b = [], max(1, start)
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


class DecodeGraphs:
    """Captured decode passes of ``model`` over ``cache`` (see the module docstring)."""

    def __init__(self, model: Any, cache: Any, max_rows: int) -> None:
        self.model, self.cache = model, cache
        self.row_buckets = buckets(max_rows)
        self.ctx_buckets = buckets(cache.max_len, min(MIN_CONTEXT, cache.max_len))
        dev = model.device
        self.tokens = torch.zeros(max_rows, dtype=torch.long, device=dev)
        self.positions = torch.zeros(max_rows, dtype=torch.long, device=dev)
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}  # -> (replay, output)
        self.fallback: str | None = None
        self.capture_s = 0.0
        self.max_rel_diff = 0.0
        t0 = time.perf_counter()
        try:
            self._capture_all()
            self._check_all()
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # capture unsupported here
            self.fallback = f"capture failed: {str(exc).splitlines()[0][:200]}"
        if self.fallback:
            self._graphs.clear()
            self._release()
        self.capture_s = time.perf_counter() - t0

    def _release(self) -> None:
        torch.cuda.synchronize(self.model.device)
        torch.cuda.empty_cache()

    @property
    def ready(self) -> bool:
        return self.fallback is None and bool(self._graphs)

    def _eager(self, rows: int, context: int) -> torch.Tensor:
        return self.model.decode(self.tokens[:rows], self.positions[:rows], self.cache, context)

    def _capture_all(self) -> None:
        pool = self._warm_up()
        # largest first: the later, smaller graphs reuse the shared pool's blocks
        for ctx in reversed(self.ctx_buckets):
            for rows in reversed(self.row_buckets):
                self._graphs[rows, ctx] = self._record(lambda r=rows, c=ctx: self._eager(r, c), pool)

    def _warm_up(self) -> Any:
        """Every bucket once on a side stream (lazy initialisations stay outside capture);
        the memory pool the graphs share."""
        side = torch.cuda.Stream(device=self.model.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for ctx in self.ctx_buckets:
                for rows in self.row_buckets:
                    self._eager(rows, ctx)
        torch.cuda.current_stream().wait_stream(side)
        return torch.cuda.graph_pool_handle()

    @staticmethod
    def _record(fn: Any, pool: Any) -> tuple[Any, torch.Tensor]:
        """Capture ``fn`` as a graph: (its replay, its static output)."""
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=pool):
            out = fn()
        return graph.replay, out

    def _check_all(self) -> None:
        """Replay each graph on random tokens/positions and compare with the eager pass."""
        gen = torch.Generator(device=self.model.device).manual_seed(0)
        vocab, worst = self.model.spec.vocab_size, 0.0
        with torch.inference_mode():
            for (rows, ctx), (replay, out) in self._graphs.items():
                self.tokens.copy_(torch.randint(0, vocab, self.tokens.shape, generator=gen,
                                                device=self.tokens.device))
                self.positions.copy_(torch.randint(0, ctx, self.positions.shape, generator=gen,
                                                   device=self.tokens.device))
                replay()
                got = out.float()
                want = self._eager(rows, ctx).float()
                scale = float(want.abs().max())
                diff = float((got - want).abs().max())
                worst = max(worst, diff / max(scale, 1e-30))
                if not diff <= RTOL * scale + ATOL:
                    self.fallback = (f"graph ({rows} rows, context {ctx}) differs from the eager "
                                     f"pass: max |diff| {diff:.3g}, logits scale {scale:.3g}")
                    return
        self.positions.zero_()
        self.tokens.zero_()
        self.max_rel_diff = worst

    def decode(self, tokens: list[int], positions: list[int], context: int) -> torch.Tensor:
        """Logits ``[B, V]`` for rows ``0..len(tokens)-1`` (``B`` = the rows bucket; rows past
        ``len(tokens)`` are spare), attending to ``context`` >= max(positions) + 1 positions."""
        n = len(tokens)
        rows = self.row_buckets[bisect.bisect_left(self.row_buckets, n)]
        ctx = self.ctx_buckets[bisect.bisect_left(self.ctx_buckets, context)]
        pad = [0] * (rows - n)
        host = torch.tensor([tokens + pad, positions + pad], dtype=torch.long)
        self.tokens[:rows].copy_(host[0], non_blocking=True)
        self.positions[:rows].copy_(host[1], non_blocking=True)
        replay, out = self._graphs[rows, ctx]
        replay()
        return out

    def stats(self) -> dict[str, Any]:
        return {"graphs": len(self._graphs), "row_buckets": self.row_buckets,
                "context_buckets": self.ctx_buckets, "capture_s": round(self.capture_s, 3),
                "max_rel_diff": self.max_rel_diff, "fallback": self.fallback}
