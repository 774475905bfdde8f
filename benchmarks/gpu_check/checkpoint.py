"""Part ``checkpoint``: a state of device tensors (8 GiB of CUDA tensors; ``--tiny``: 1 GiB on the
CPU, written to /dev/shm so the rehearsal spares CI's disk) saved three ways into the work folder,
each deleted before the next:

- fabric ``AsyncSaver`` (``reserve()`` of the host staging area timed on its own, then one save):
  the caller's stall is the device-to-host copy into the staging area; the total runs to commit;
- fabric ``save()`` (synchronous: the stall is the whole save, device-to-host copies included);
- ``torch.distributed.checkpoint.async_save`` (single process), when this torch has it.

Reported per method: the caller's stall, the time to a durable checkpoint and its throughput
(state bytes / total), and the stall as a fraction of the synchronous save (target <= 10 %).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.part import Ctx, Recorder


def _filesystem(path: Path) -> dict[str, Any]:
    """Mount point, type and free bytes of the file system holding ``path``."""
    best = ("/", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mnt, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[0]):
                best = (mnt, fstype)
    except OSError:
        pass
    return {"mount": best[0], "type": best[1], "free_bytes": shutil.disk_usage(path).free}


def _state(gib: float, dev: Any) -> dict[str, Any]:
    """The checkpoint benchmark's LLM-like layout (bf16 + fp32 tensors), filled on the device:
    random on a GPU; on the CPU (``--tiny``) one value per tensor, as the saves neither compress
    nor look at the values, and the CPU's random numbers took 3 of the rehearsal's seconds."""
    import torch

    from benchmarks.checkpoint.state import layout

    state: dict[str, Any] = {}
    for i, (name, shape, dtype) in enumerate(layout(gib)):
        node = state
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        dt = getattr(torch, dtype)
        if not dt.is_floating_point:
            node[leaf] = torch.zeros(shape, dtype=dt, device=dev)
        elif dev.type == "cuda":
            node[leaf] = torch.rand(shape, dtype=dt, device=dev)
        else:
            node[leaf] = torch.full(shape, (i % 251) / 251, dtype=dt, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return state


def _fabric(state: dict[str, Any], base: Path, size: int, sync: Any) -> dict[str, Any]:
    from fabric_hpc.checkpoint import AsyncSaver, save

    out: dict[str, Any] = {}
    with AsyncSaver(base / "async", slots=1) as saver:
        t0 = time.perf_counter()
        saver.reserve(size + 64 * 1024)
        out["async_reserve_s"] = time.perf_counter() - t0
        sync()
        t0 = time.perf_counter()
        handle = saver.save(state, step=1)
        stall = time.perf_counter() - t0
        handle.wait()
        total = time.perf_counter() - t0
    out["fabric_async"] = {"stall_s": stall, "total_s": total, "gbps": size / total / 1e9}
    shutil.rmtree(base / "async", ignore_errors=True)
    sync()
    t0 = time.perf_counter()
    save(base / "sync", state, step=1)
    total = time.perf_counter() - t0
    out["fabric_sync"] = {"stall_s": total, "total_s": total, "gbps": size / total / 1e9}
    shutil.rmtree(base / "sync", ignore_errors=True)
    return out


def _dcp_async(state: dict[str, Any], path: Path, size: int, sync: Any) -> dict[str, Any]:
    import inspect

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    if not hasattr(dcp, "async_save"):
        return {"skipped": "this torch has no torch.distributed.checkpoint.async_save"}
    kw: dict[str, Any] = {}
    if "no_dist" in inspect.signature(dcp.async_save).parameters:
        kw["no_dist"] = True
    elif not dist.is_initialized():  # older torch: a one-process gloo group (a CPU backend)
        store = dist.FileStore(str(path.parent / "dcp-store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    sync()
    t0 = time.perf_counter()
    response = dcp.async_save(state, checkpoint_id=str(path), **kw)
    stall = time.perf_counter() - t0
    getattr(response, "upload_completion", response).result()
    total = time.perf_counter() - t0
    return {"stall_s": stall, "total_s": total, "gbps": size / total / 1e9}


def checkpoint(rec: Recorder, ctx: Ctx) -> None:
    import torch

    gpu = torch.cuda.is_available() and not ctx.tiny
    dev = torch.device("cuda", 0) if gpu else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(dev)) if gpu else (lambda: None)
    base = ctx.work / "ckpt"
    if ctx.size.get("ckpt_tmpfs") and Path("/dev/shm").is_dir():  # --tiny: spare the shared CI disk
        base = Path("/dev/shm") / f"fabric-gpu-check-{os.getpid()}"
    base.mkdir(parents=True, exist_ok=True)
    try:
        _measure(rec, ctx, dev, sync, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(rec: Recorder, ctx: Ctx, dev: Any, sync: Any, base: Path) -> None:
    from benchmarks.checkpoint.state import flat, nbytes

    t0 = time.perf_counter()
    state = _state(float(ctx.size["ckpt_gib"]), dev)
    size = nbytes(state)
    rec.set(phase="state built", device=str(dev), state_bytes=size, tensors=len(flat(state)),
            build_s=time.perf_counter() - t0, filesystem=_filesystem(base), cpus=os.cpu_count())
    free = shutil.disk_usage(base).free
    if free < size + (1 << 30):  # one copy at a time is on disk; say so rather than hit ENOSPC
        raise RuntimeError(f"{base}: {free / 2**30:.1f} GiB free, the state needs "
                           f"{size / 2**30:.1f} GiB + 1 GiB: pass --work on a larger file system")
    got = _fabric(state, base, size, sync)
    rec.set(phase="fabric saves done", **got)
    dcp = _dcp_async(state, base / "dcp", size, sync)
    shutil.rmtree(base / "dcp", ignore_errors=True)
    sync_s = got["fabric_sync"]["total_s"]
    for key in ("fabric_async", "fabric_sync"):
        got[key]["stall_of_sync"] = got[key]["stall_s"] / sync_s
    if "stall_s" in dcp:
        dcp["stall_of_sync"] = dcp["stall_s"] / sync_s
    rec.set(phase="done", dcp_async=dcp, **got)
