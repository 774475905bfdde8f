"""A simulated continuous-batching engine whose step time follows a documented cost model.

It lets CI test saturation logic deterministically: no GPU, no sleep (with a
:class:`VirtualClock`), reproducible tokens. The cost of one ``step`` is

    t = base_s + prefill_s_per_token * P + decode_s_per_seq * D + ctx_s_per_token * C

with P the padded prompt tokens prefilled in this step (each ``add`` group is padded to its
longest prompt, like a padded prefill kernel), D the sequences decoding one token, C the context
tokens (KV entries) those decode steps read. :data:`H100_1B` derives the constants from
published H100 SXM figures for the 0.85 B-parameter Llama-style model of issue 8 (the PyTorch
engine's ``1b`` preset: hidden 2048, 16 layers, 4 KV heads of 128, bf16): see
``docs/inference.md`` for the arithmetic. They are an estimate from datasheet peaks and stated
efficiencies, not a measurement.

Artefact: ``engine_dir/config.json`` in TensorRT-LLM's layout (``pretrained_config`` +
``build_config``) plus a ``simulated`` section (KV capacity, cost model, vocabulary, seed);
:func:`write_simulated_artefact` writes one.
"""

from __future__ import annotations

import json
import threading
from array import array
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engine import (
    EngineConfig,
    EngineLimits,
    EngineRequest,
    EngineResult,
    check_add,
    read_trtllm_artefact,
    register_engine,
)

__all__ = ["H100_1B", "ZERO_COST", "CostModel", "SimulatedEngine", "VirtualClock",
           "write_simulated_artefact"]


@dataclass(frozen=True, slots=True)
class CostModel:
    """Seconds per step = base + prefill*P + decode*D + ctx*C (see module docstring)."""

    base_s: float
    prefill_s_per_token: float
    decode_s_per_seq: float
    ctx_s_per_token: float

    def step_seconds(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        if not (prefill_tokens or decode_seqs):
            return 0.0
        return (self.base_s + self.prefill_s_per_token * prefill_tokens
                + self.decode_s_per_seq * decode_seqs + self.ctx_s_per_token * context_tokens)


# The `1b` preset has 852,559,872 = 0.85e9 params (docs/engines.md): * 2 bytes = 1.7 GB of weights
# read once per step at 3.35 TB/s = 0.51 ms, plus ~0.49 ms of launch/sync overhead per step;
# 2 * 0.85e9 FLOP per token at 39 % of the 989 TFLOP/s dense bf16 peak = 4.4 us per prefill token
# and per decode sequence (first derived from 1.1e9 params at 50 %; kept); KV read per context token
# = 16 layers * 2 (K,V) * 4 heads * 128 * 2 bytes = 32 KiB at 3.35 TB/s = 9.8 ns.
H100_1B = CostModel(base_s=1.0e-3, prefill_s_per_token=4.4e-6, decode_s_per_seq=4.4e-6,
                    ctx_s_per_token=9.8e-9)
ZERO_COST = CostModel(0.0, 0.0, 0.0, 0.0)


class VirtualClock:
    """A clock that advances only when told: steps 'take' their modelled time without sleeping."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


class _RealClock:
    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def _request_key(seed: int, rid: str) -> int:
    return zlib.crc32(f"{seed}:{rid}".encode())


class SimulatedEngine:
    """Continuous batching over a cost model. See :class:`~fabric_hpc.inference.engine.Engine`."""

    def __init__(self, limits: EngineLimits, cost: CostModel = H100_1B, *, clock: Any = None,
                 vocab_size: int = 32000, seed: int = 0, time_scale: float = 1.0,
                 eos_token: int | None = None) -> None:
        self._limits = limits
        self.cost = cost
        self.clock = clock if clock is not None else _RealClock()
        self.vocab_size, self.seed, self.time_scale, self.eos = vocab_size, seed, time_scale, eos_token
        # id -> [request, generated tokens (a compact array: no int object per token), key]
        self._running: dict[str, list[Any]] = {}
        self._pending: list[list[EngineRequest]] = []
        self._reserved = 0
        self._closed = False
        self.busy_seconds = 0.0
        self.steps = 0
        self.padded_prefill_tokens = 0
        self.prompt_tokens = 0

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    def active(self) -> int:
        return len(self._running)

    def add(self, requests: Sequence[EngineRequest]) -> None:
        check_add(self._limits, requests, self._running, closed=self._closed, reserved_tokens=self._reserved)
        if not requests:
            return
        reserve = sum(r.reserve_tokens for r in requests)
        self._reserved += reserve
        for r in requests:
            self._running[r.id] = [r, array("l"), _request_key(self.seed, r.id)]
        self._pending.append(list(requests))

    def step(self) -> list[EngineResult]:
        if self._closed:
            raise ConfigError("engine is closed")
        if not self._running:
            return []
        started = self.clock.now()
        prefill = 0
        fresh: set[str] = set()
        for group in self._pending:
            longest = max(len(r.prompt) for r in group)
            prefill += longest * len(group)
            self.prompt_tokens += sum(len(r.prompt) for r in group)
            fresh.update(r.id for r in group)
        self.padded_prefill_tokens += prefill
        self._pending.clear()
        decode = len(self._running)
        context = 0
        done: list[EngineResult] = []
        vocab, crc = self.vocab_size, zlib.crc32
        for rid, (req, toks, key) in self._running.items():
            n = len(toks)
            context += len(req.prompt) + n
            tok = crc(n.to_bytes(4, "little"), key) % vocab
            toks.append(tok)
            if len(toks) >= req.max_new_tokens or tok == self.eos:
                done.append(EngineResult(rid, toks.tolist(), "stop" if tok == self.eos and
                                         len(toks) < req.max_new_tokens else "length"))
        seconds = self.cost.step_seconds(prefill, decode, context) * self.time_scale
        # the step lasts its modelled time: this method's own Python work counts towards it
        self.clock.sleep(seconds - (self.clock.now() - started))
        self.busy_seconds += seconds
        self.steps += 1
        for res in done:
            req = self._running.pop(res.id)[0]
            self._reserved -= req.reserve_tokens
        return done

    def close(self) -> None:
        self._closed = True
        self._running.clear()
        self._pending.clear()


def write_simulated_artefact(engine_dir: str | Path, *, limits: EngineLimits,
                             cost: CostModel = H100_1B, architecture: str = "LlamaForCausalLM",
                             dtype: str = "bfloat16", tensor_parallel_size: int = 1,
                             vocab_size: int = 32000, seed: int = 0) -> dict[str, Any]:
    """Write a simulated engine's artefact and return the matching nine-field engine config."""
    path = Path(engine_dir)
    path.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": "fabric-simulated-1",
        "pretrained_config": {"architecture": architecture, "dtype": dtype, "vocab_size": vocab_size,
                              "mapping": {"world_size": tensor_parallel_size,
                                          "tp_size": tensor_parallel_size, "pp_size": 1}},
        "build_config": {"max_batch_size": limits.max_batch_size,
                         "max_input_len": limits.max_input_len, "max_seq_len": limits.max_seq_len,
                         "max_num_tokens": limits.max_num_tokens, "max_beam_width": 1},
        "simulated": {"kv_capacity_tokens": limits.kv_capacity_tokens,
                      "best_batch_size": limits.best_batch_size, "cost_model": asdict(cost),
                      "seed": seed},
    }
    write_atomic(path / "config.json", json.dumps(doc, indent=2))
    return {"engine": "simulated", "engine_dir": str(path), "architecture": architecture,
            "dtype": dtype, "max_batch_size": limits.max_batch_size,
            "max_input_len": limits.max_input_len, "max_seq_len": limits.max_seq_len,
            "max_num_tokens": limits.max_num_tokens, "tensor_parallel_size": tensor_parallel_size}


def _build(config: EngineConfig, *, local_rank: int = 0, clock: Any = None,
           time_scale: float = 1.0, cost: CostModel | None = None) -> SimulatedEngine:
    doc = json.loads((Path(config.engine_dir) / "config.json").read_text(encoding="utf-8"))
    sim = doc.get("simulated") or {}
    try:
        limits = EngineLimits(config.max_batch_size, config.max_num_tokens, config.max_input_len,
                              config.max_seq_len, int(sim["kv_capacity_tokens"]),
                              int(sim.get("best_batch_size", 0)))
        model = cost or CostModel(**sim["cost_model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{config.engine_dir}/config.json: bad 'simulated' section ({exc})",
                          hint="rewrite it with write_simulated_artefact") from None
    return SimulatedEngine(limits, model, clock=clock, time_scale=time_scale,
                           vocab_size=int(doc["pretrained_config"].get("vocab_size", 32000)),
                           seed=int(sim.get("seed", 0)))


register_engine("simulated", read_trtllm_artefact, _build)
