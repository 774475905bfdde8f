"""Harness benchmarks on CPU with the simulated engine (used by ``fabric infer bench`` and
``python -m benchmarks.inference``).

Workload ("ragged", ShareGPT-like, medians and clips as the engines issue specifies; the sigmas
are our choice, not a fit to the data set, which cannot be downloaded here): prompt lengths
log-normal with median 200 tokens, sigma 1.0, clipped to 8-1024; output lengths log-normal
with median 120, sigma 0.8, clipped to 4-256; seeded. See docs/inference.md.
"""

from __future__ import annotations

import math
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fabric_hpc.inference.admission import budget_for
from fabric_hpc.inference.engine import EngineLimits, EngineRequest, EngineResult
from fabric_hpc.inference.intake import WorkItem
from fabric_hpc.inference.journal import ChunkSink
from fabric_hpc.inference.lanes import ShapeLanes
from fabric_hpc.inference.pipeline import Pipeline, PipelineOptions
from fabric_hpc.inference.scheduler import Scheduler
from fabric_hpc.inference.simulated import H100_1B, SimulatedEngine

__all__ = ["BENCH_LIMITS", "WORKLOAD", "NullEngine", "bench_overhead", "bench_rss", "bench_saturation",
           "ragged_items", "static_baseline_waste"]

WORKLOAD = {"in_median": 200, "in_sigma": 1.0, "in_clip": (8, 1024),
            "out_median": 120, "out_sigma": 0.8, "out_clip": (4, 256)}
# H100-sized simulated engine: batch 256, 8192 tokens a step, 256 Ki KV tokens configured
BENCH_LIMITS = EngineLimits(max_batch_size=256, max_num_tokens=8192, max_input_len=1024,
                            max_seq_len=1280, kv_capacity_tokens=262_144)
# the zero-cost engine of the overhead benchmark: nothing but the batch size limits a step
ZERO_LIMITS = EngineLimits(max_batch_size=256, max_num_tokens=1 << 20, max_input_len=1024,
                           max_seq_len=1280, kv_capacity_tokens=1 << 20)
_TOKENS = list(range(1000, 1000 + 1024))  # shared token ids: the harness never reads them


def _lognormal(rng: random.Random, median: float, sigma: float, clip: tuple[int, int]) -> int:
    return min(clip[1], max(clip[0], round(math.exp(rng.gauss(math.log(median), sigma)))))


def ragged_items(n: int | None, seed: int = 0, *, max_new: int | None = None,
                 prefix: str = "q") -> Iterator[WorkItem]:
    """``n`` (or endless) work items from :data:`WORKLOAD`."""
    rng, w, i = random.Random(seed), WORKLOAD, 0
    while n is None or i < n:
        plen = _lognormal(rng, w["in_median"], w["in_sigma"], w["in_clip"])
        out = max_new or _lognormal(rng, w["out_median"], w["out_sigma"], w["out_clip"])
        yield WorkItem(f"{prefix}{i}", _TOKENS[:plen], out)
        i += 1


def static_baseline_waste(items: list[WorkItem], batch: int) -> float:
    """Padding waste of stock static batching in arrival order: each batch padded to its longest
    prompt and run to its longest output (what ``generate()`` on fixed batches does)."""
    padded = useful = 0
    for k in range(0, len(items), batch):
        b = items[k:k + batch]
        padded += len(b) * (max(it.length for it in b) + max(it.max_new_tokens for it in b))
        useful += sum(it.length + it.max_new_tokens for it in b)
    return (padded - useful) / padded


class NullEngine:
    """The zero-cost engine: every held sequence finishes at the next step with one token."""

    def __init__(self, limits: EngineLimits) -> None:
        self.limits = limits
        self._held: list[str] = []

    def add(self, requests: list[EngineRequest]) -> None:
        self._held.extend(r.id for r in requests)

    def step(self) -> list[EngineResult]:
        held, self._held = self._held, []
        return [EngineResult(rid, [0]) for rid in held]

    def active(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._held = []


def _core_run(items: list[WorkItem]) -> tuple[float, float]:
    """One pass of the scheduling core; (wall seconds, this thread's CPU seconds)."""
    for item in items:
        item.arrival = 0
    engine = NullEngine(ZERO_LIMITS)
    sched = Scheduler(engine, ShapeLanes(128))
    budget = budget_for(ZERO_LIMITS)
    n, done = len(items), 0
    it = iter(items)
    pending: WorkItem | None = None
    t0, c0 = time.perf_counter(), time.thread_time()
    while done < n:
        while True:
            pending = pending or next(it, None)
            if pending is None or not budget.try_admit(pending.cost):
                break
            sched.push(pending)
            pending = None
        sched.fill()
        finished = sched.step()
        budget.release(sum(len(it.prompt) + it.max_new_tokens for _, it in finished))
        done += len(finished)
    return time.perf_counter() - t0, time.thread_time() - c0


def bench_overhead(n: int = 200_000, seed: int = 1, repeats: int = 3) -> dict[str, float]:
    """Scheduling throughput with a zero-cost engine (:class:`NullEngine`, one token per item):
    the scheduling core (admission + lanes + engine feed + completion) in one thread, best of
    ``repeats`` passes by wall clock and by the thread's CPU time (other processes on a shared
    machine inflate wall time, not CPU time); then the threaded pipeline (intake, executor and
    writer threads; results discarded), one pass."""
    items = list(ragged_items(n, seed, max_new=1))
    runs = [_core_run(items) for _ in range(repeats)]
    core_wall = n / min(w for w, _ in runs)
    core_cpu = n / min(c for _, c in runs)
    for item in items:
        item.arrival = 0
    engine = NullEngine(ZERO_LIMITS)
    pipe = Pipeline(engine, items, None, PipelineOptions(admit_batch=256))
    t0 = time.perf_counter()
    snap = pipe.run()
    threaded = snap["items_done"] / (time.perf_counter() - t0)
    return {"items": n, "repeats": repeats, "core_items_per_s": core_wall,
            "core_items_per_cpu_s": core_cpu, "pipeline_items_per_s": threaded}


def bench_saturation(n: int = 8000, seed: int = 2, time_scale: float = 1.0,
                     tick: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The ragged workload through the threaded pipeline and a journalled sink, with the
    simulated engine sleeping its modelled H100 step time."""
    items = list(ragged_items(n, seed))
    base = {f"static_b{b}_waste": static_baseline_waste(items, b) for b in (32, 128)}
    engine = SimulatedEngine(BENCH_LIMITS, H100_1B, time_scale=time_scale)
    with tempfile.TemporaryDirectory(prefix="fabric-infer-bench-") as tmp:
        sink = ChunkSink(tmp, rank=0, attempt=1, chunk_size=1024)
        pipe = Pipeline(engine, items, sink, PipelineOptions())
        snap = pipe.run(tick=(lambda: tick(pipe.snapshot())) if tick else None)
        sink.close()
    return {**base, "items": n, "items_done": snap["items_done"],
            "padding_waste": snap["padding_waste"],
            "prefill_padding_waste": snap["prefill_padding_waste"],
            "engine_busy_fraction": snap["engine_busy_fraction"],
            "output_tokens_per_s": snap["output_tokens_per_s"], "wall_s": snap["wall_s"],
            "modelled_busy_s": engine.busy_seconds, "engine_steps": snap["engine_steps"],
            "budget_closes": snap["budget"]["closes"]}


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_rss(duration_s: float = 600.0, warmup_s: float = 60.0, sample_s: float = 5.0,
              tick: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Endless ragged input (faster than the engine) for ``duration_s``; RSS sampled."""
    engine = SimulatedEngine(BENCH_LIMITS, H100_1B)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fabric-infer-rss-") as tmp:
        sink = ChunkSink(tmp, rank=0, attempt=1, chunk_size=4096)
        pipe = Pipeline(engine, ragged_items(None, 3), sink, PipelineOptions(), stop=stop)
        pipe.start()
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration_s and pipe.alive():
            time.sleep(sample_s)
            samples.append((time.monotonic() - t0, _rss_kib()))
            if tick:
                tick({**pipe.snapshot(), "rss_kib": samples[-1][1]})
        snap = pipe.snapshot()
        pipe.shutdown(10.0)
        sink.close()
    after = [kib for t, kib in samples if t >= warmup_s]
    if not after:
        return {"error": "run shorter than warm-up", "samples": samples}
    growth = (max(after) - after[0]) / after[0]
    return {"duration_s": duration_s, "warmup_s": warmup_s, "rss_after_warmup_kib": after[0],
            "rss_max_kib": max(after), "rss_end_kib": after[-1], "growth": growth,
            "items_done": snap["items_done"], "engine_busy_fraction": snap["engine_busy_fraction"],
            "padding_waste": snap["padding_waste"], "queue_depths_end": snap["queue_depths"],
            "samples": samples}
