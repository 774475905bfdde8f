"""The contenders: raw fsync'd file I/O, torch.save/load, torch.distributed.checkpoint, zarr
with default settings, and fabric's store (sync save, async save, restore)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.checkpoint.state import flat

BLOCK = 64 << 20


def _bytes_of(t: Any) -> np.ndarray:
    import torch
    return t.contiguous().view(-1).view(torch.uint8).numpy()


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def raw_save(state: dict, path: Path) -> None:
    """The disk's durable sequential write bandwidth: every tensor's bytes into one file, fsync."""
    fd = os.open(path / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for _, t in flat(state):
        data = memoryview(_bytes_of(t))
        for lo in range(0, data.nbytes, BLOCK):
            os.write(fd, data[lo:lo + BLOCK])
    os.fsync(fd)
    os.close(fd)


def raw_load(state: dict, path: Path) -> dict:
    """Cold sequential read of the same file into fresh buffers."""
    import torch
    out = {}
    with open(path / "raw.bin", "rb", buffering=0) as f:
        for name, t in flat(state):
            dst = torch.empty_like(t)
            view = memoryview(_bytes_of(dst))
            pos = 0
            while pos < view.nbytes:
                pos += f.readinto(view[pos:pos + BLOCK])
            out[name] = dst
    return out


def torch_save(state: dict, path: Path) -> None:
    import torch
    with open(path / "state.pt", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def torch_load(state: dict, path: Path) -> Any:
    import torch
    return torch.load(path / "state.pt", weights_only=True)


def dcp_save(state: dict, path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    dcp.save(state, checkpoint_id=str(path / "dcp"))


def dcp_load(state: dict, path: Path) -> Any:
    """DCP loads in place into preallocated tensors (its normal use): allocate, then load."""
    import torch
    import torch.distributed.checkpoint as dcp
    target = _map(state, torch.empty_like)
    dcp.load(target, checkpoint_id=str(path / "dcp"))
    return target


def zarr_save(state: dict, path: Path) -> None:
    """zarr-python 3 with default settings (zstd, automatic chunks); bf16 as a uint16 view."""
    import zarr
    group = zarr.open_group(path / "zarr", mode="w")
    for name, t in flat(state):
        arr = _np(t)
        z = group.create_array(name, shape=arr.shape, dtype=arr.dtype)
        z[...] = arr
    _fsync_tree(path / "zarr")


def zarr_load(state: dict, path: Path) -> dict:
    import zarr
    group = zarr.open_group(path / "zarr", mode="r")
    return {name: group[name][...] for name, _ in flat(state)}


def fabric_save(state: dict, path: Path) -> Any:
    from fabric_hpc.checkpoint import save
    return save(path / "fabric", state, step=1)


def fabric_load(state: dict, path: Path) -> Any:
    from fabric_hpc.checkpoint import restore
    return restore(path / "fabric", as_torch=True)


def fabric_load_into(state: dict, path: Path) -> Any:
    import torch
    from fabric_hpc.checkpoint import restore
    target = _map(state, torch.empty_like)
    return restore(path / "fabric", into=target)


def _np(t: Any) -> np.ndarray:
    import torch
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _map(state: dict, fn: Any) -> dict:
    return {k: _map(v, fn) if isinstance(v, dict) else fn(v) for k, v in state.items()}


def disk_usage(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache (root only). Returns whether it worked."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def reset_peak_rss() -> int:
    """Reset VmHWM (Linux: write 5 to clear_refs); return the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        pass
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def timed(fn: Any, *args: Any) -> tuple[float, Any, int]:
    """(seconds, result, peak RSS above the RSS at the start)."""
    base = reset_peak_rss()
    t0 = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - t0
    return seconds, result, max(0, peak_rss() - base)
