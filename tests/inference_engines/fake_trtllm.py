"""A fake of the slice of ``tensorrt_llm.bindings.executor`` the adapter uses (TensorRT-LLM is
one of the components allowed a fake: no wheel exists for CPU CI machines).

It mirrors the bindings' names and call shapes (``Executor(path, ModelType, ExecutorConfig)``,
``enqueue_requests`` -> ids, ``await_responses(timeout=)`` -> responses with ``request_id``,
``has_error()``, ``result.is_final``/``output_token_ids``/``finish_reasons``,
``get_latest_iteration_stats``, ``shutdown``) and runs in-flight batching of its own: every
``await_responses`` call is one iteration producing one token per active request.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class ModelType(enum.Enum):
    DECODER_ONLY = 0


class CommunicationType(enum.Enum):
    MPI = 0


class CommunicationMode(enum.Enum):
    LEADER = 0
    ORCHESTRATOR = 1


class FinishReason(enum.Enum):
    NOT_FINISHED = 0
    END_ID = 1
    STOP_WORDS = 2
    LENGTH = 3


@dataclass
class SamplingConfig:
    beam_width: int = 1
    top_k: int | None = None


@dataclass
class OutputConfig:
    exclude_input_from_output: bool = False


@dataclass
class KvCacheConfig:
    free_gpu_memory_fraction: float | None = None


@dataclass
class ParallelConfig:
    communication_type: CommunicationType = CommunicationType.MPI
    communication_mode: CommunicationMode = CommunicationMode.LEADER
    device_ids: list[int] | None = None
    participant_ids: list[int] | None = None


@dataclass
class ExecutorConfig:
    max_beam_width: int = 1
    parallel_config: ParallelConfig | None = None
    kv_cache_config: KvCacheConfig | None = None


@dataclass
class Request:
    input_token_ids: list[int]
    max_tokens: int
    sampling_config: SamplingConfig = field(default_factory=SamplingConfig)
    output_config: OutputConfig = field(default_factory=OutputConfig)
    end_id: int | None = None


class Executor:
    instances: list[Executor] = []
    max_active = 4  # requests beyond this wait in the executor's queue, like the real one

    def __init__(self, path: Path, model_type: ModelType, config: ExecutorConfig) -> None:
        if not (Path(path) / "config.json").is_file():
            raise RuntimeError(f"no engine in {path}")
        self.path, self.model_type, self.config = Path(path), model_type, config
        self._next, self._queue, self._active = 1, [], {}
        self._stats: list[Any] = []
        self.iterations = 0
        self.alive = True
        Executor.instances.append(self)

    def can_enqueue_requests(self) -> bool:
        return self.alive

    def enqueue_requests(self, requests: list[Request]) -> list[int]:
        ids = []
        for r in requests:
            self._queue.append((self._next, r, []))
            ids.append(self._next)
            self._next += 1
        return ids

    def await_responses(self, timeout: Any = None) -> list[Any]:
        while self._queue and len(self._active) < self.max_active:
            rid, r, toks = self._queue.pop(0)
            self._active[rid] = (r, toks)
        out = []
        for rid, (r, toks) in list(self._active.items()):
            key = zlib.crc32(bytes(str(list(r.input_token_ids)), "ascii"))
            tok = zlib.crc32(len(toks).to_bytes(4, "little"), key) % 1000
            toks.append(tok)
            ended = r.end_id is not None and tok == r.end_id
            if ended or len(toks) >= r.max_tokens:
                del self._active[rid]
                res = SimpleNamespace(is_final=True, output_token_ids=[list(toks)],
                                      finish_reasons=[FinishReason.END_ID if ended
                                                      else FinishReason.LENGTH])
                out.append(SimpleNamespace(request_id=rid, has_error=lambda: False,
                                           error_msg="", result=res))
        self.iterations += 1
        self._stats.append(SimpleNamespace(iter=self.iterations,
                                           num_active_requests=len(self._active)))
        return out

    def get_latest_iteration_stats(self) -> list[Any]:
        stats, self._stats = self._stats, []
        return stats

    def shutdown(self) -> None:
        self.alive = False
