"""The scheduling core: lanes -> engine batches -> completions. A step function with no I/O.

:class:`Scheduler` owns the shape lanes and the engine's slot/KV accounting. ``push`` queues an
admitted item, ``fill`` hands the engine same-lane groups until it holds its best batch size (or
runs out of KV room or per-step token room), ``step`` runs one engine iteration and returns the
finished ``(result, item)`` pairs. The threaded :class:`~fabric_hpc.inference.pipeline.Pipeline`
drives it from one executor thread; tests and the overhead benchmark drive it directly.

Timings: ``fill`` stamps each item's ``t_scheduled``; ``step`` stamps ``t_first_token`` on the
items added since the step before (by the engine contract a step runs the prefill of what was
added and makes one token for every running sequence) and ``t_finished`` on those it returns.
One ``time.perf_counter()`` per ``fill`` and per ``step``, not per item.

Token accounting (for padding waste): each ``add`` group costs ``len(group) * longest prompt``
prefill slots (a padded prefill), of which ``sum(prompt lengths)`` are useful; every running
sequence costs one decode slot per step, all useful (finished sequences leave at once:
continuous batching has no generation padding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fabric_hpc.inference.engine import Engine, EngineRequest, EngineResult
from fabric_hpc.inference.intake import WorkItem
from fabric_hpc.inference.lanes import ShapeLanes

__all__ = ["Scheduler", "TokenCounters"]


@dataclass(slots=True)
class TokenCounters:
    groups: int = 0
    padded_prefill: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    steps: int = 0
    completed: int = 0

    @property
    def padding_waste(self) -> float:
        """Padding slots / all processed token slots (prefill slots + decode slots)."""
        slots = self.padded_prefill + self.output_tokens
        return (self.padded_prefill - self.prompt_tokens) / slots if slots else 0.0

    @property
    def prefill_padding_waste(self) -> float:
        """Padding slots / prefill slots (the prefill-only view)."""
        if not self.padded_prefill:
            return 0.0
        return (self.padded_prefill - self.prompt_tokens) / self.padded_prefill


class Scheduler:
    """Feeds one engine from shape lanes. Single-threaded (the executor thread)."""

    def __init__(self, engine: Engine, lanes: ShapeLanes | None = None) -> None:
        self.engine = engine
        self.limits = engine.limits
        self.lanes = lanes or ShapeLanes()
        self.in_engine: dict[str, WorkItem] = {}
        self.reserved = 0
        self._pending_prefill = 0
        self._fresh: list[WorkItem] = []  # added since the last step: their first token comes next
        self.tokens = TokenCounters()

    def push(self, item: WorkItem) -> None:
        self.lanes.push(item)

    def waiting(self) -> int:
        return len(self.lanes)

    def fill(self) -> int:
        """Add same-lane groups until the engine is at its best batch size; return items added."""
        lim, eng, tok = self.limits, self.engine, self.tokens
        active = len(self.in_engine)
        free = lim.best_batch_size - active
        if free <= 0 or not self.lanes:
            return 0
        groups = self.lanes.pop_groups(
            free, max_prefill_tokens=lim.max_num_tokens - active - self._pending_prefill,
            max_reserve_tokens=lim.kv_capacity_tokens - self.reserved)
        added = 0
        in_engine, fresh = self.in_engine, self._fresh
        now = time.perf_counter()
        for batch in groups:
            longest = 0
            reqs = []
            for it in batch:
                it.t_scheduled = now
                fresh.append(it)
                ln = len(it.prompt)
                longest = ln if ln > longest else longest
                tok.prompt_tokens += ln
                self.reserved += ln + it.max_new_tokens
                in_engine[it.id] = it
                reqs.append(EngineRequest(it.id, it.prompt, it.max_new_tokens))
            eng.add(reqs)
            padded = longest * len(batch)
            tok.padded_prefill += padded
            tok.groups += 1
            self._pending_prefill += padded
            added += len(batch)
        return added

    def step(self) -> list[tuple[EngineResult, WorkItem]]:
        """One engine iteration; the finished results with their items."""
        if not self.in_engine:
            return []
        results = self.engine.step()
        now = time.perf_counter()
        self._pending_prefill = 0
        for it in self._fresh:  # this step ran their prefill and made their first token
            it.t_first_token = now
        self._fresh.clear()
        tok = self.tokens
        tok.steps += 1
        out = []
        for res in results:
            it = self.in_engine.pop(res.id)
            it.t_finished = now
            self.reserved -= len(it.prompt) + it.max_new_tokens
            tok.output_tokens += len(res.tokens)
            out.append((res, it))
        tok.completed += len(out)
        return out
