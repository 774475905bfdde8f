"""The threaded pipeline: bounded stages with blocking backpressure around one executor thread.

Stages (each bounded; a full stage blocks the one above it, so memory stays flat at any input
rate):

1. intake reader   -- a thread pulling items from the intake iterator (one item at a time);
2. admission       -- :class:`~fabric_hpc.inference.admission.TokenBudget` (blocks the reader);
                      admitted items travel in small batches over ``admit_q`` (bounded);
3. lane queues     -- :class:`~fabric_hpc.inference.lanes.ShapeLanes`, bounded by the budget;
4. pending groups  -- what ``Scheduler.fill`` hands the engine, at most the best batch size;
5. engine slots/KV -- ``EngineLimits`` (batch size, KV reservation, per-step tokens);
6. completion drain-- ``done_q`` (bounded) from the executor to the writer thread;
7. result sink     -- :class:`~fabric_hpc.inference.journal.ChunkSink` buffer (``chunk_size``);
8. journal writer  -- chunk commit + fsync'd journal record; only then is an item acknowledged
                      (counted done). The token budget covers stages 2-5 and is released when
                      the engine returns an item; stages 6-8 are bounded by their own sizes.

The engine is driven by one blocking executor thread (``engine.add``/``engine.step`` only: no
asyncio, no extra synchronisation on that path). Any thread's exception stops all stages; the
writer commits whatever it buffered (flushing the journal) before the pipeline returns.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError, FabricError
from fabric_hpc.inference.admission import TokenBudget, budget_for
from fabric_hpc.inference.engine import Engine, EngineResult
from fabric_hpc.inference.intake import WorkItem, item_digest
from fabric_hpc.inference.journal import MAX_CHUNK_SIZE, ChunkSink, RequestTimes
from fabric_hpc.inference.lanes import ShapeLanes
from fabric_hpc.inference.scheduler import Scheduler

__all__ = ["MAX_CHUNK_SIZE", "MAX_OVERCOMMIT", "PHASES", "Pipeline", "PipelineOptions", "request_times"]

MAX_OVERCOMMIT = 16.0  # the token budget is at most this many times the engine's KV capacity
_INT_FIELDS = ("num_lanes", "max_age", "admit_batch", "admit_queue", "done_queue", "chunk_size",
               "drain_batch", "max_drain_batches")

_END = object()
#: a rank's phases in order (its metrics records' ``phase``): the runner writes ``reading_input``
#: while the rank reads and shards the input before its pipeline starts; the pipeline reports
#: ``running`` while intake still reads its share, ``draining`` once all of it was read (the engine
#: finishes what it holds, the writer commits) and ``finished`` once every result is committed
PHASES = ("reading_input", "running", "draining", "finished")


def request_times(item: WorkItem, anchor: tuple[float, float]) -> RequestTimes:
    """An item's timings as UNIX times (``anchor``: ``(time.time(), time.perf_counter())`` read
    together once, so the times are monotonic within a rank whatever the system clock does
    meanwhile) and its prompt length: what :meth:`ChunkSink.add` writes as the result's ``metrics``."""
    base = anchor[0] - anchor[1]
    return RequestTimes(base + item.t_admitted, base + item.t_scheduled, base + item.t_first_token,
                        base + item.t_finished, len(item.prompt))


def labels(item: WorkItem, tokens: list[int] | None = None,
           decode: Callable[[list[int]], str] | None = None) -> dict[str, Any] | None:
    """The output ``tokens`` as ``text`` (``decode``d) for a text prompt, and the input's optional
    ``priority`` and ``class``, recorded in its result where given (not the defaults, 0 and empty:
    most inputs carry neither, and their results stay as they were)."""
    text = {"text": decode(tokens)} if item.text is not None and decode and tokens is not None else {}
    if not item.priority and not item.klass:
        return text or None
    return {**text, **({"priority": item.priority} if item.priority else {}),
            **({"class": item.klass} if item.klass else {})}


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    overcommit: float = 2.0
    low_fraction: float = 0.8
    num_lanes: int = 128
    max_age: int = 8192
    admit_batch: int = 64
    admit_queue: int = 32          # batches
    done_queue: int = 64           # result batches
    chunk_size: int = 512
    flush_interval_s: float = 0.5
    drain_batch: int = 16          # finished items handed to the writer at once
    max_drain_batches: int = 4     # admitted batches moved into lanes between two engine steps
    # GIL hand-off interval while the pipeline runs (restored after): the executor gets the GIL
    # back quickly when a step ends even if intake is busy parsing; None leaves it alone
    switch_interval_s: float | None = 0.0005

    def __post_init__(self) -> None:
        """Every field checked at construction: a ConfigError naming the field, its range and the fix
        (a zero queue size would make a queue unbounded, zero drain batches would hang)."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                _bad(name, value, "an integer >= 1")
        if self.chunk_size > MAX_CHUNK_SIZE:  # its journal record must stay a line readers take
            _bad("chunk_size", self.chunk_size, f"an integer in 1..{MAX_CHUNK_SIZE}")
        _real(self, "overcommit", lambda v: 1.0 <= v <= MAX_OVERCOMMIT, f"a number in 1..{MAX_OVERCOMMIT:g} "
              f"(the token budget is overcommit x the engine's KV capacity)")
        _real(self, "low_fraction", lambda v: 0.0 < v < 1.0, "a number strictly between 0 and 1")
        _real(self, "flush_interval_s", lambda v: v >= 0.0, "a finite number of seconds >= 0")
        if self.switch_interval_s is not None:
            _real(self, "switch_interval_s", lambda v: v > 0.0, "None or a finite number of seconds > 0")


def _bad(name: str, value: Any, want: str) -> None:
    raise ConfigError(f"PipelineOptions.{name} is {value!r}: it must be {want}",
                      hint=f"pass {name}= within that range, or leave it out for the default "
                           f"({next(f.default for f in fields(PipelineOptions) if f.name == name)!r})")


def _real(opts: PipelineOptions, name: str, ok: Callable[[float], bool], want: str) -> None:
    value = getattr(opts, name)
    if type(value) not in (int, float) or not math.isfinite(value) or not ok(value):
        _bad(name, value, want)


class Pipeline:
    """Run ``items`` through ``engine`` into ``sink`` (``None`` discards: benchmarks)."""

    def __init__(self, engine: Engine, items: Iterable[WorkItem], sink: ChunkSink | None,
                 options: PipelineOptions | None = None, *,
                 stop: threading.Event | None = None,
                 on_ack: Callable[[list[str]], None] | None = None,
                 decode: Callable[[list[int]], str] | None = None) -> None:
        self.opt = opt = options or PipelineOptions()
        self.engine, self.items, self.sink, self.on_ack = engine, items, sink, on_ack
        self.decode = decode  # a text prompt's result also gets its output as text
        self.budget: TokenBudget = budget_for(engine.limits, overcommit=opt.overcommit,
                                              low_fraction=opt.low_fraction)
        self.scheduler = Scheduler(engine, ShapeLanes(opt.num_lanes, max_age=opt.max_age))
        self.admit_q: queue.Queue[Any] = queue.Queue(opt.admit_queue)
        self.done_q: queue.Queue[Any] = queue.Queue(opt.done_queue)
        self.stop = stop or threading.Event()
        self.errors: list[BaseException] = []
        self.intake_count = 0
        self.acked = 0
        self.busy_s = 0.0
        self.t_start = self.t_end = 0.0
        self.anchor = (time.time(), time.perf_counter())  # UNIX time of the timings' clock
        self.input_read = False  # intake has read (and admitted) its whole input
        self.drained = False     # the executor ended by running out of work (not stopped)
        self._threads: list[threading.Thread] = []
        self._switch: float | None = None

    # ------------------------------------------------------------------ threads
    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - any failure stops every stage
                self.errors.append(exc)
                self.stop.set()
        return run

    def _put(self, q: queue.Queue[Any], obj: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(obj, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _intake(self) -> None:
        batch: list[WorkItem] = []
        budget, size, clock = self.budget, self.opt.admit_batch, time.perf_counter
        for item in self.items:
            if not budget.try_admit(item.cost):
                if batch and not self._put(self.admit_q, batch):
                    return
                batch = []
                if not budget.admit(item.cost, stop=self.stop):
                    return
            item.t_admitted = clock()
            batch.append(item)
            self.intake_count += 1
            if len(batch) >= size:
                if not self._put(self.admit_q, batch):
                    return
                batch = []
        if batch:
            self._put(self.admit_q, batch)
        self.input_read = True
        self._put(self.admit_q, _END)

    def _drain_admitted(self, block: bool) -> bool:
        """Move admitted batches into the lanes; False once intake has ended."""
        sched = self.scheduler
        for _ in range(self.opt.max_drain_batches):
            try:
                got = self.admit_q.get(timeout=0.05) if block else self.admit_q.get_nowait()
            except queue.Empty:
                return True
            if got is _END:
                return False
            for it in got:
                sched.push(it)
            block = False
        return True

    def _executor(self) -> None:
        sched, intake_open = self.scheduler, True
        clock = time.perf_counter
        finished: list[tuple[EngineResult, WorkItem]] = []  # the completion drain, bounded
        self.t_start = clock()
        while not self.stop.is_set():
            if intake_open:
                intake_open = self._drain_admitted(block=not sched.in_engine and not sched.waiting())
            if not sched.fill() and not sched.in_engine and sched.waiting():
                raise ExternalError("scheduler stalled: waiting items fit no empty engine")
            if sched.in_engine:
                t0 = clock()
                done = sched.step()
                self.busy_s += clock() - t0
                if done:
                    # out of lanes and engine: the budget covers those two; done_q and the sink
                    # are bounded queues of their own
                    self.budget.release(sum(len(it.prompt) + it.max_new_tokens for _, it in done))
                    finished.extend(done)
            if finished and (len(finished) >= self.opt.drain_batch or not sched.in_engine):
                if not self._put(self.done_q, finished):
                    break
                finished = []
            elif not sched.in_engine and not intake_open and not sched.waiting():
                self.drained = True
                break
        if finished:
            self._put(self.done_q, finished)
        self.t_end = clock()
        self._put(self.done_q, _END)

    def _ack(self, pairs: list[tuple[EngineResult, WorkItem]]) -> None:
        self.acked += len(pairs)
        if self.on_ack:
            self.on_ack([r.id for r, _ in pairs])

    def _writer(self) -> None:
        sink, held = self.sink, []
        last = time.monotonic()
        try:
            while True:
                try:
                    got = self.done_q.get(timeout=0.05)
                except queue.Empty:
                    got = None
                    if self.stop.is_set():
                        break
                if got is _END:
                    break
                if got:
                    if sink is None:
                        self._ack(got)
                        continue
                    for res, it in got:
                        held.append((res, it))
                        if sink.add(res, item_digest(it), request_times(it, self.anchor),
                                    labels(it, res.tokens, self.decode)):
                            sink.commit()
                            acked, held = held, []
                            self._ack(acked)
                            last = time.monotonic()
                if held and time.monotonic() - last > self.opt.flush_interval_s:
                    sink.commit()  # type: ignore[union-attr]
                    acked, held, last = held, [], time.monotonic()
                    self._ack(acked)
        except BaseException:
            held = []  # the sink (or an ack) failed here: a second commit would only fail again
            raise
        finally:
            if held and sink is not None:  # flush the journal on the way out, even on teardown
                sink.commit()
                acked, held = held, []
                self._ack(acked)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self.opt.switch_interval_s is not None:
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(self.opt.switch_interval_s)
        for name, fn in (("intake", self._intake), ("executor", self._executor),
                         ("writer", self._writer)):
            t = threading.Thread(target=self._guard(fn), name=f"fabric-infer-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop every stage; the writer commits and journals what it holds before exiting."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._restore_switch()

    def _restore_switch(self) -> None:
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, tick: Callable[[], None] | None = None, interval: float = 0.5) -> None:
        """Wait for the pipeline; call ``tick`` every ``interval`` s; re-raise a stage's error."""
        writer = self._threads[-1]
        while writer.is_alive():
            writer.join(interval)
            if tick:
                tick()
        self.stop.set()
        for t in self._threads:
            t.join(5.0)
        self._restore_switch()
        if self.errors:
            exc = self.errors[0]
            if isinstance(exc, FabricError | OSError) or not isinstance(exc, Exception):
                raise exc  # already says what and where (an OSError names its file)
            raise ExternalError(f"inference pipeline failed: {type(exc).__name__}: {str(exc)[:500]}",
                                hint="the engine or a stage of the harness raised it; finished chunks are kept: "
                                     "fix the cause and rerun with the same --output to resume") from exc

    def run(self, tick: Callable[[], None] | None = None) -> dict[str, Any]:
        self.start()
        self.join(tick)
        return self.snapshot()

    def phase(self) -> str:
        """``running``, ``draining`` or ``finished`` (:data:`PHASES`)."""
        if self.drained and not self.errors and not self.alive():
            return "finished"
        return "draining" if self.input_read else "running"

    def snapshot(self) -> dict[str, Any]:
        """Counters and queue depths (the telemetry record)."""
        tok, sched = self.scheduler.tokens, self.scheduler
        end = self.t_end or time.perf_counter()
        wall = max(end - self.t_start, 1e-9) if self.t_start else 0.0
        return {
            "phase": self.phase(),
            "items_in": self.intake_count, "items_done": self.acked,
            "input_tokens": tok.prompt_tokens, "output_tokens": tok.output_tokens,
            "padding_waste": tok.padding_waste, "prefill_padding_waste": tok.prefill_padding_waste,
            "padded_prefill_tokens": tok.padded_prefill,
            "engine_steps": tok.steps, "engine_busy_fraction": self.busy_s / wall if wall else 0.0,
            "wall_s": wall, "items_per_s": self.acked / wall if wall else 0.0,
            "input_tokens_per_s": tok.prompt_tokens / wall if wall else 0.0,
            "output_tokens_per_s": tok.output_tokens / wall if wall else 0.0,
            "queue_depths": {
                "admit_q": self.admit_q.qsize(), "lanes": sched.waiting(),
                "engine_active": len(sched.in_engine), "done_q": self.done_q.qsize(),
                "sink": len(self.sink) if self.sink is not None else 0,
            },
            "budget": {"in_flight": self.budget.in_flight, "high": self.budget.high,
                       "low": self.budget.low, "open": self.budget.open,
                       "closes": self.budget.stats.closes, "reopens": self.budget.stats.reopens},
        }
