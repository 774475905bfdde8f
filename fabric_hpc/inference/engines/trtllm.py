"""TensorRT-LLM adapter: the harness's engine contract over TensorRT-LLM's executor API.

One engine per MPI rank. The outer launcher (``srun --mpi=pmi2`` or ``mpiexec``) starts one
process per GPU; each builds an ``Executor`` in LEADER mode with
``ParallelConfig(MPI, LEADER, device_ids=[local GPU], participant_ids=[rank])``, so each
executor's MPI world is just its own rank and TensorRT-LLM's own MPI use never collides with the
job's other ranks (without ``participant_ids`` every rank would join one executor). Hence
``tensor_parallel_size`` must be 1 here: a TP engine needs several participants per executor.

Mapping to the contract:

* ``add`` -> ``Executor.enqueue_requests`` (greedy: beam width 1, top-k 1; output excludes the
  prompt); TensorRT-LLM's own in-flight batching runs them.
* ``step`` -> ``Executor.await_responses(timeout)``: final responses become results; a response
  with an error raises :class:`~fabric_hpc.errors.ExternalError`. Iteration statistics
  (``get_latest_iteration_stats``) are kept in :attr:`TrtllmEngine.iteration_stats`.
* ``close`` -> ``Executor.shutdown``.

``tensorrt_llm`` is imported only when an engine is built. Where it does not import, building
raises :class:`TrtllmUnavailable` (an :class:`~fabric_hpc.errors.ExternalError`) with install
guidance; config checking (``read_trtllm_artefact``) works everywhere. See docs/engines.md.
"""

from __future__ import annotations

import datetime
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.inference.engine import (
    EngineConfig,
    EngineLimits,
    EngineRequest,
    EngineResult,
    check_add,
    read_trtllm_artefact,
    register_engine,
)

__all__ = ["INSTALL_HINT", "TrtllmEngine", "TrtllmUnavailable", "build_trtllm_engine",
           "import_executor_api", "mpi_rank"]

INSTALL_HINT = ("install TensorRT-LLM on the GPU nodes (NVIDIA's wheel or NGC container, "
                "matching the engine's build version: pip install tensorrt_llm "
                "--extra-index-url https://pypi.nvidia.com), build the engine with trtllm-build, "
                "or use engine: pytorch; see docs/engines.md")


class TrtllmUnavailable(ExternalError):
    """``tensorrt_llm`` cannot be imported on this node."""


def import_executor_api() -> Any:
    """``tensorrt_llm.bindings.executor``, or :class:`TrtllmUnavailable`."""
    try:
        import tensorrt_llm.bindings.executor as api
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA/MPI library load failure
        raise TrtllmUnavailable(f"tensorrt_llm does not import on this node ({exc})",
                                hint=INSTALL_HINT) from None
    return api


def mpi_rank() -> int:
    """This process's rank in the outer launcher's world (0 when not launched by MPI/Slurm)."""
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _finish_reason(api: Any, result: Any) -> str:
    reasons = getattr(result, "finish_reasons", None) or []
    end = getattr(getattr(api, "FinishReason", None), "END_ID", None)
    return "stop" if end is not None and reasons and reasons[0] == end else "length"


class TrtllmEngine:
    """Continuous batching by TensorRT-LLM's executor. See the module docstring."""

    def __init__(self, executor: Any, api: Any, limits: EngineLimits, *,
                 end_id: int | None = None, poll_s: float = 0.05, stats_kept: int = 1024) -> None:
        self.executor, self.api, self._limits = executor, api, limits
        self.end_id, self.poll = end_id, datetime.timedelta(seconds=poll_s)
        self._by_req: dict[int, EngineRequest] = {}
        self._held: set[str] = set()
        self._closed = False
        self.iteration_stats: deque[Any] = deque(maxlen=stats_kept)

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    def active(self) -> int:
        return len(self._held)

    def _request(self, r: EngineRequest) -> Any:
        api = self.api
        kw: dict[str, Any] = {
            "input_token_ids": list(r.prompt),
            "sampling_config": api.SamplingConfig(beam_width=1, top_k=1),
            "output_config": api.OutputConfig(exclude_input_from_output=True),
        }
        if self.end_id is not None:
            kw["end_id"] = self.end_id
        try:
            return api.Request(max_tokens=r.max_new_tokens, **kw)
        except TypeError:  # TensorRT-LLM < 0.12 named it max_new_tokens
            return api.Request(max_new_tokens=r.max_new_tokens, **kw)

    def add(self, requests: Sequence[EngineRequest]) -> None:
        check_add(self._limits, requests, self._held, closed=self._closed)
        if not requests:
            return
        ids = {r.id for r in requests}
        if not self.executor.can_enqueue_requests():
            raise ExternalError("TensorRT-LLM executor does not accept requests (shut down?)")
        req_ids = self.executor.enqueue_requests([self._request(r) for r in requests])
        for rid, r in zip(req_ids, requests, strict=True):
            self._by_req[int(rid)] = r
        self._held |= ids

    def step(self) -> list[EngineResult]:
        if self._closed:
            raise ConfigError("engine is closed")
        if not self._held:
            return []
        done = []
        for resp in self.executor.await_responses(timeout=self.poll):
            req = self._by_req.get(int(resp.request_id))
            if req is None:
                continue
            if resp.has_error():
                raise ExternalError(f"TensorRT-LLM failed request {req.id!r}: {resp.error_msg}")
            result = resp.result
            if not result.is_final:
                continue
            del self._by_req[int(resp.request_id)]
            self._held.discard(req.id)
            tokens = [int(t) for t in result.output_token_ids[0]][: req.max_new_tokens]
            reason = _finish_reason(self.api, result)
            done.append(EngineResult(req.id, tokens, reason))  # type: ignore[arg-type]
        self.iteration_stats.extend(self.executor.get_latest_iteration_stats())
        return done

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held.clear()
        self._by_req.clear()
        self.executor.shutdown()


def build_trtllm_engine(config: EngineConfig, *, local_rank: int = 0, rank: int | None = None,
                        device_id: int | None = None, kv_cache_free_gpu_memory_fraction: float = 0.9,
                        kv_capacity_tokens: int | None = None, end_id: int | None = None,
                        poll_s: float = 0.05, api: Any = None) -> TrtllmEngine:
    """The ``tensorrt_llm`` engine factory: one LEADER-mode executor for this rank's GPU.

    ``rank`` defaults to the launcher's rank, ``device_id`` to ``local_rank``.
    ``kv_capacity_tokens`` (default ``max_batch_size * max_seq_len``) is what the harness may
    reserve; set it to the executor's real pool (``kv_cache_stats.max_num_blocks *
    tokens_per_block`` in :attr:`TrtllmEngine.iteration_stats`) to keep requests out of
    TensorRT-LLM's internal queue. ``api`` replaces ``tensorrt_llm.bindings.executor`` (tests)."""
    if config.tensor_parallel_size != 1:
        raise ConfigError(
            f"tensor_parallel_size {config.tensor_parallel_size}: the adapter runs one "
            "single-GPU executor per MPI rank (participant_ids=[rank])",
            hint="build the engine with tp_size 1 and run one rank per GPU")
    api = api or import_executor_api()
    rank = mpi_rank() if rank is None else rank
    device = local_rank if device_id is None else device_id
    exec_config = api.ExecutorConfig(max_beam_width=1)
    exec_config.parallel_config = api.ParallelConfig(
        api.CommunicationType.MPI, api.CommunicationMode.LEADER,
        device_ids=[device], participant_ids=[rank])
    exec_config.kv_cache_config = api.KvCacheConfig(
        free_gpu_memory_fraction=kv_cache_free_gpu_memory_fraction)
    try:
        executor = api.Executor(Path(config.engine_dir), api.ModelType.DECODER_ONLY, exec_config)
    except (RuntimeError, ValueError) as exc:
        raise ExternalError(f"TensorRT-LLM could not load {config.engine_dir} on GPU {device} "
                            f"(rank {rank}): {exc}",
                            hint="the engine must be built by the installed TensorRT-LLM "
                                 "version for this GPU type") from None
    limits = EngineLimits(config.max_batch_size, config.max_num_tokens, config.max_input_len,
                          config.max_seq_len,
                          kv_capacity_tokens or config.max_batch_size * config.max_seq_len)
    return TrtllmEngine(executor, api, limits, end_id=end_id, poll_s=poll_s)


register_engine("tensorrt_llm", read_trtllm_artefact, build_trtllm_engine)
