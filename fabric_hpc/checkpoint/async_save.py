"""Asynchronous save: the caller is blocked only while tensors are copied into a bounded,
reusable host staging area; a background thread writes and commits.

The staging area has ``slots`` buffers (2 = double buffering: one snapshot being written while
the next is staged). When every slot is busy, a new save waits (``policy="wait"``) or raises
:class:`CheckpointBusyError` (``policy="fail"``). Staging buffers are allocated once and reused,
so steady-state saves do not allocate.
"""

from __future__ import annotations

import atexit
import functools
import mmap
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fabric_hpc.checkpoint.contracts import Communicator
from fabric_hpc.checkpoint.errors import CheckpointBusyError, CheckpointError
from fabric_hpc.errors import require_whole
from fabric_hpc.checkpoint.format import flatten_keyed
from fabric_hpc.checkpoint.tensors import HostArray, Shard, check_storable, host_view, is_torch
from fabric_hpc.checkpoint.values import decode, encode, is_tensor_like
from fabric_hpc.checkpoint.writer import SaveResult, save
from fabric_hpc.events import emit


@dataclass
class SaveHandle:
    """A save in flight: ``wait()`` returns the SaveResult or raises the save's error."""

    step: int
    stall_seconds: float = 0.0
    nbytes: int = 0
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _result: SaveResult | None = None
    _error: BaseException | None = None
    _reported: bool = False  # the error was raised to someone (wait(), close())

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> SaveResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"save of step {self.step} still running after {timeout}s")
        if self._error is not None:
            self._reported = True
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
            self.arena = np.empty(0, np.uint8)  # the old buffer is freed before the bigger one is made
            try:
                self.arena = _prefaulted(nbytes)  # faulted in now, not during the caller's copy
            except MemoryError:
                raise CheckpointError(f"cannot allocate {nbytes:,} bytes of host memory for the staging area",
                                      hint="free host memory, save a smaller state (or with slots=1), or use "
                                           "the synchronous save(), which needs no staging copy") from None


def _prefaulted(nbytes: int) -> np.ndarray:
    """``nbytes`` of host memory with every page already faulted in: one ``mmap(MAP_POPULATE)``
    where the OS has it (Linux), else a write to every page (one page fault each: on a VM about
    ten times slower, 5.6 s against 0.5 s for 1 GiB on the 2-vCPU CI machine)."""
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is not None:
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
            return np.frombuffer(buf, np.uint8)
        except OSError:  # e.g. a locked-down mmap: the portable way below
            pass
    arena = np.empty(nbytes, np.uint8)
    arena[::4096] = 0
    return arena


class AsyncSaver:
    """Background checkpoint writer for one checkpoint root, or for a
    :class:`~fabric_hpc.checkpoint.tiers.TieredStore` (use as a context manager).

    :meth:`close` (and leaving the ``with`` block) waits for every queued save and raises the
    first failure nobody has seen through :meth:`SaveHandle.wait`, as a CheckpointError naming
    the step. A saver never closed finishes its queued saves when the interpreter exits, waiting
    at most ``exit_timeout_s``; what it cannot finish, or what failed, is reported as a
    ``checkpoint.async_unfinished`` / ``checkpoint.async_failed`` event and a warning."""

    def __init__(self, directory: Path | str | Any, *, comm: Communicator | None = None, slots: int = 1,
                 max_staging_bytes: int | None = None, policy: Literal["wait", "fail"] = "wait",
                 copy_threads: int = 2, write_threads: int = 4, exit_timeout_s: float = 600.0) -> None:
        if slots not in (1, 2) or policy not in ("wait", "fail"):
            raise CheckpointError(f"slots must be 1 or 2 and policy 'wait' or 'fail' (got {slots}, {policy!r})")
        if isinstance(directory, (str, os.PathLike)):
            self.directory: Path | None = Path(directory)
            self._save: Any = functools.partial(save, self.directory, comm=comm)
        else:  # a TieredStore: save to the local tier, drain in the background
            self.directory, self._save = None, directory.save
        self.comm, self.policy = comm, policy
        if max_staging_bytes is not None:
            require_whole(max_staging_bytes, "max_staging_bytes", minimum=1, error=CheckpointError,
                          hint="a byte count, e.g. max_staging_bytes=8 << 30, or None for no limit")
        self.max_staging_bytes = max_staging_bytes
        self._slots = [_Slot() for _ in range(slots)]
        self._free = threading.Condition()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._copy_pool = ThreadPoolExecutor(max(1, copy_threads), thread_name_prefix="ckpt-copy")
        self._write_threads = write_threads
        self._handles: list[SaveHandle] = []
        self._closed = False
        self.exit_timeout_s = exit_timeout_s
        self._thread = threading.Thread(target=self._run, name="ckpt-writer", daemon=True)
        self._thread.start()
        self._exit_hook = functools.partial(_finish_at_exit, weakref.ref(self))
        _register_exit_hook(self._exit_hook)

    def reserve(self, nbytes: int) -> None:
        """Allocate (and fault in) the staging buffers up front: ``nbytes`` per slot, at most
        ``max_staging_bytes`` (the bound a save's staging is held to)."""
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise CheckpointError(f"reserve() takes a non-negative integer of bytes, got {nbytes!r}",
                                  hint="pass the state's size in bytes, e.g. sum(t.nbytes for t in tensors)")
        if self.max_staging_bytes is not None and nbytes > self.max_staging_bytes:
            raise CheckpointError(f"cannot reserve {nbytes:,} bytes of staging per slot: over "
                                  f"max_staging_bytes={self.max_staging_bytes:,}",
                                  hint="reserve at most max_staging_bytes (a state that needs more is "
                                       "refused by save() too), or raise max_staging_bytes")
        for slot in self._slots:
            slot.reserve(nbytes)

    def save(self, state: Mapping[str, Any], *, step: int, **save_kw: Any) -> SaveHandle:
        """Stage ``state`` (blocking only for the host copy) and queue it for writing."""
        if self._closed:
            raise CheckpointError("this AsyncSaver is closed")
        t0 = time.perf_counter()
        flat = list(flatten_keyed(state))
        views = [(keys, value, _source(value, name)) for name, keys, value in flat if is_tensor_like(value)]
        # the non-tensor leaves, copied now (as their JSON form, decoded): later edits do not leak in
        plain = [(keys, decode(encode(value, keys))) for _, keys, value in flat if not is_tensor_like(value)]
        nbytes = sum(_aligned(v[2][0].nbytes) for v in views)
        if self.max_staging_bytes is not None and nbytes > self.max_staging_bytes:
            raise CheckpointError(
                f"state needs {nbytes} bytes of staging, the limit is {self.max_staging_bytes}",
                hint="raise max_staging_bytes or use the synchronous save()")
        slot = self._acquire(step)
        try:
            slot.reserve(nbytes)
            staged = self._stage(slot, views)
            for keys, value in plain:
                _nest(staged, keys, value)
        except BaseException:
            self._release(slot)
            raise
        handle = SaveHandle(step=step, nbytes=nbytes, stall_seconds=time.perf_counter() - t0)
        self._handles = [h for h in self._handles if not h.done() or (h.error and not h._reported)]
        self._handles.append(handle)
        self._queue.put((handle, slot, staged, save_kw))
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

    def _stage(self, slot: _Slot,
               views: list[tuple[tuple, Any, tuple[np.ndarray | Any, str]]]) -> dict[str, Any]:
        """The staged copy as nested dicts with the state's own keys (int keys stay ints)."""
        staged: dict[str, Any] = {}
        jobs, offset = [], 0
        for keys, value, (src, logical) in views:
            size = src.nbytes
            dst = slot.arena[offset:offset + size].view(_storage_dtype(src)).reshape(src.shape)
            offset += _aligned(size)
            jobs.append(self._copy_pool.submit(_copy, dst, src))
            host = HostArray(dst, logical)
            _nest(staged, keys, Shard(host, value.global_shape, value.dim, value.part, value.parts)
                  if isinstance(value, Shard) else host)
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

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every queued save, stop the writer, then raise the first failed save whose
        error no :meth:`SaveHandle.wait` raised (CheckpointError naming the step)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._copy_pool.shutdown()
            _unregister_exit_hook(self._exit_hook)
        failed = self._unreported_failures()
        if failed and raise_errors:
            first = failed[0]
            more = f" (and steps {[h.step for h in failed[1:]]})" if len(failed) > 1 else ""
            why = getattr(first.error, "message", None) or str(first.error)
            raise CheckpointError(f"async save of step {first.step} failed: {why}{more}",
                                  hint=getattr(first.error, "hint", None)
                                  or "wait() on each save's handle to handle its error") from first.error
        for h in failed:  # not raised: the with block is already raising its own error
            emit("checkpoint.async_failed", step=h.step, error=str(h.error))

    def _unreported_failures(self) -> list[SaveHandle]:
        failed = [h for h in self._handles if h.done() and h.error is not None and not h._reported]
        for h in failed:
            h._reported = True
        return failed

    def _finish_at_exit(self) -> None:
        """At interpreter exit: finish the queued saves (bounded), report what failed or did not finish."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(self.exit_timeout_s)
        unfinished = [h.step for h in self._handles if not h.done()]
        if unfinished:
            emit("checkpoint.async_unfinished", steps=unfinished, timeout_s=self.exit_timeout_s)
            warnings.warn(f"fabric_hpc AsyncSaver: saves of steps {unfinished} did not finish within "
                          f"{self.exit_timeout_s}s of interpreter exit and are lost; call close() "
                          "before exiting",
                          RuntimeWarning, stacklevel=1)
        for h in self._unreported_failures():
            emit("checkpoint.async_failed", step=h.step, error=str(h.error))
            warnings.warn(f"fabric_hpc AsyncSaver: async save of step {h.step} failed: {h.error}",
                          RuntimeWarning, stacklevel=1)

    def __enter__(self) -> AsyncSaver:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(raise_errors=exc_type is None)


def _finish_at_exit(ref: weakref.ref) -> None:
    saver = ref()
    if saver is not None:
        saver._finish_at_exit()


def _register_exit_hook(hook: Any) -> None:
    """Run ``hook`` at interpreter exit before concurrent.futures refuses new work (the writer
    thread's save uses thread pools): threading's exit hooks run before atexit's, newest first
    (concurrent.futures registers its own when imported, so ours runs before it)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
        return
    register(hook)


def _unregister_exit_hook(hook: Any) -> None:
    atexit.unregister(hook)
    hooks = getattr(threading, "_threading_atexits", None)
    if isinstance(hooks, list):  # threading wraps each hook in a functools.partial
        hooks[:] = [h for h in hooks if getattr(h, "func", h) is not hook]


def _nest(tree: dict, keys: tuple, value: Any) -> None:
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value


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
