"""Asynchronous save: the caller is blocked only while tensors are copied into a bounded,
reusable host staging area; a background thread writes and commits.

The staging area has ``slots`` buffers (2 = double buffering: one snapshot being written while
the next is staged). When every slot is busy, a new save waits (``policy="wait"``) or raises
:class:`CheckpointBusyError` (``policy="fail"``). Staging buffers are allocated once and reused,
so steady-state saves do not allocate.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fabric_hpc.checkpoint.contracts import Communicator
from fabric_hpc.checkpoint.errors import CheckpointBusyError, CheckpointError
from fabric_hpc.checkpoint.format import flatten, unflatten
from fabric_hpc.checkpoint.tensors import HostArray, Shard, check_storable, host_view, is_torch
from fabric_hpc.checkpoint.writer import SaveResult, save


@dataclass
class SaveHandle:
    """A save in flight: ``wait()`` returns the SaveResult or raises the save's error."""

    step: int
    stall_seconds: float = 0.0
    nbytes: int = 0
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _result: SaveResult | None = None
    _error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> SaveResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"save of step {self.step} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def throughput_gbps(self) -> float | None:
        return self._result.gbps if self._result else None


class _Slot:
    def __init__(self) -> None:
        self.arena = np.empty(0, np.uint8)
        self.busy = False

    def reserve(self, nbytes: int) -> None:
        if self.arena.size < nbytes:
            self.arena = np.empty(nbytes, np.uint8)
            self.arena[::4096] = 0  # fault the pages in now, not during the caller's copy


class AsyncSaver:
    """Background checkpoint writer for one checkpoint root, or for a
    :class:`~fabric_hpc.checkpoint.tiers.TieredStore` (use as a context manager)."""

    def __init__(self, directory: Path | str | Any, *, comm: Communicator | None = None, slots: int = 1,
                 max_staging_bytes: int | None = None, policy: Literal["wait", "fail"] = "wait",
                 copy_threads: int = 2, write_threads: int = 4) -> None:
        if slots not in (1, 2) or policy not in ("wait", "fail"):
            raise CheckpointError(f"slots must be 1 or 2 and policy 'wait' or 'fail' (got {slots}, {policy!r})")
        if isinstance(directory, (str, os.PathLike)):
            self.directory: Path | None = Path(directory)
            self._save: Any = functools.partial(save, self.directory, comm=comm)
        else:  # a TieredStore: save to the local tier, drain in the background
            self.directory, self._save = None, directory.save
        self.comm, self.policy = comm, policy
        self.max_staging_bytes = max_staging_bytes
        self._slots = [_Slot() for _ in range(slots)]
        self._free = threading.Condition()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._copy_pool = ThreadPoolExecutor(max(1, copy_threads), thread_name_prefix="ckpt-copy")
        self._write_threads = write_threads
        self._thread = threading.Thread(target=self._run, name="ckpt-writer", daemon=True)
        self._thread.start()
        self._closed = False

    def reserve(self, nbytes: int) -> None:
        """Allocate (and fault in) the staging buffers up front."""
        for slot in self._slots:
            slot.reserve(nbytes)

    def save(self, state: Mapping[str, Any], *, step: int, **save_kw: Any) -> SaveHandle:
        """Stage ``state`` (blocking only for the host copy) and queue it for writing."""
        if self._closed:
            raise CheckpointError("this AsyncSaver is closed")
        t0 = time.perf_counter()
        flat = list(flatten(state))
        views = [(name, value, _source(value, name)) for name, value in flat]
        nbytes = sum(_aligned(v[2][0].nbytes) for v in views)
        if self.max_staging_bytes is not None and nbytes > self.max_staging_bytes:
            raise CheckpointError(
                f"state needs {nbytes} bytes of staging, the limit is {self.max_staging_bytes}",
                hint="raise max_staging_bytes or use the synchronous save()")
        slot = self._acquire(step)
        try:
            slot.reserve(nbytes)
            staged = self._stage(slot, views)
        except BaseException:
            self._release(slot)
            raise
        handle = SaveHandle(step=step, nbytes=nbytes, stall_seconds=time.perf_counter() - t0)
        self._queue.put((handle, slot, unflatten(staged), save_kw))
        return handle

    def _acquire(self, step: int) -> _Slot:
        with self._free:
            while True:
                for slot in self._slots:
                    if not slot.busy:
                        slot.busy = True
                        return slot
                if self.policy == "fail":
                    raise CheckpointBusyError(f"cannot start save of step {step}: a save is in flight",
                                              hint="wait for the handle, or use policy='wait'")
                self._free.wait()

    def _release(self, slot: _Slot) -> None:
        with self._free:
            slot.busy = False
            self._free.notify_all()

    def _stage(self, slot: _Slot, views: list[tuple[str, Any, tuple[np.ndarray | Any, str]]]) -> dict[str, Any]:
        staged, jobs, offset = {}, [], 0
        for name, value, (src, logical) in views:
            size = src.nbytes
            dst = slot.arena[offset:offset + size].view(_storage_dtype(src)).reshape(src.shape)
            offset += _aligned(size)
            jobs.append(self._copy_pool.submit(_copy, dst, src))
            host = HostArray(dst, logical)
            staged[name] = Shard(host, value.global_shape, value.dim, value.part, value.parts) \
                if isinstance(value, Shard) else host
        for job in jobs:
            job.result()
        return staged

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            handle, slot, staged, kw = item
            try:
                handle._result = self._save(staged, step=handle.step,
                                            threads=kw.pop("threads", self._write_threads), **kw)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller via the handle
                handle._error = exc
            finally:
                self._release(slot)
                handle._done.set()

    def wait_all(self) -> None:
        """Block until every queued save has finished (errors stay on their handles)."""
        with self._free:
            while any(s.busy for s in self._slots):
                self._free.wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._copy_pool.shutdown()

    def __enter__(self) -> AsyncSaver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _aligned(n: int) -> int:
    return (n + 63) // 64 * 64


def _source(value: Any, name: str) -> tuple[Any, str]:
    """What to copy from: a torch tensor stays a tensor (device-to-host copy by torch), the rest
    become host numpy views in storage form."""
    data = value.data if isinstance(value, Shard) else value
    if is_torch(data) and data.device.type not in ("cpu", "meta"):
        check_storable(data, name)
        from fabric_hpc.checkpoint.format import dtype_name, stored_dtype
        return _DeviceSource(data, stored_dtype(dtype_name(data))), dtype_name(data)
    return host_view(data, name)


class _DeviceSource:
    def __init__(self, tensor: Any, stored: np.dtype) -> None:
        self.tensor, self.dtype = tensor, stored
        self.shape = tuple(tensor.shape)
        self.nbytes = tensor.numel() * tensor.element_size()


def _storage_dtype(src: Any) -> np.dtype:
    return src.dtype


def _copy(dst: np.ndarray, src: Any) -> None:
    if isinstance(src, _DeviceSource):
        import torch
        out = torch.from_numpy(dst.reshape(-1).view(np.uint8))
        out.copy_(src.tensor.resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8))
        return
    np.copyto(dst, src)
