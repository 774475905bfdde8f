"""Parts ``discovery`` and ``ceilings``: what the lent machine is, and what it can do.

``discovery`` records the NVML answers in the fixture format of
:mod:`fabric_hpc.topology.nvml_recording` (``OUT/nvml-recording.json``, the file
``tests/topology/record_nvml.py`` writes), replays that recording through
:func:`fabric_hpc.topology.discover` with this host's sysfs (``OUT/discovery.yaml`` +
``discovery.facts.json``) and builds the fabric model from the result. The sysfs files discovery
read are kept too (``OUT/sysfs-snapshot.tar.gz``, from ``snapshot_sysfs`` of
:mod:`fabric_hpc.topology.discover_sysfs`); replaying recording + snapshot must give the same
discovery (checked here). Without NVML (CPU CI) the recording holds NVML's refusal and the part
reports ``nvml: unavailable: <why>``.

``ceilings`` measures a bf16 matrix product, a device-to-device copy and host<->device copies, so
the useful FLOP/s and bytes/s of the inference runs can be read against measured ceilings as
well as the datasheet peaks (see ``benchmarks/inference_gpu/workload.py``: PEAKS).
"""

from __future__ import annotations

import re
import socket
import tarfile
import time
from typing import Any

from benchmarks.gpu_check.part import Ctx, Recorder


def _hostname() -> str:
    """This host's short name, made a plain host name (the lent machine's name may not be one)."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name or "lent-gpu"


def discovery(rec: Recorder, ctx: Ctx) -> None:
    from fabric_hpc.topology import build, discover
    from fabric_hpc.topology.discover_sysfs import snapshot_sysfs
    from fabric_hpc.topology.nvml_recording import FORMAT, VERSION, record_nvml, save_recording

    host = _hostname()
    try:
        import pynvml  # noqa: F401 - presence check; record_nvml imports it again

        nvml_rec = record_nvml()
    except ImportError:
        nvml_rec = {"format": FORMAT, "version": VERSION,
                    "init_error": {"nvml_error": -1, "text": "nvidia-ml-py (pynvml) not installed"}}
    path = save_recording(nvml_rec, ctx.out / "nvml-recording.json",
                          note=f"recorded by python -m benchmarks.gpu_check on {host}")
    rec.set(phase="nvml recorded", nvml_recording=path.name, host=host)
    found = discover(nvml_recording=path, hostname=host)
    found.write(ctx.out / "discovery.yaml")
    snap = snapshot_sysfs(ctx.work / "sysfs-snapshot")
    with tarfile.open(ctx.out / "sysfs-snapshot.tar.gz", "w:gz") as tar:
        tar.add(snap, arcname=".")
    replayed = discover(root=snap, nvml_recording=path, hostname=host)
    fabric = build(found.spec)
    facts = found.facts
    why = facts["nvml"]["reason"]
    rec.set(
        nvml="available" if found.nvml_available else f"unavailable: {why}",
        driver_version=facts["nvml"]["driver_version"],
        gpus=[{k: g.get(k) for k in ("name", "memory_bytes", "pci_bus_id", "numa_node", "placed_by",
                                     "gpm_supported", "pcie_gbps")} | {"nvlinks": len(g["nvlinks"])}
              for g in facts["gpus"]],
        cpus=facts["cpus"], numa_nodes=len(facts["numa_nodes"]), hcas=len(facts["hcas"]),
        nics=[n["name"] for n in facts["net"] if n.get("physical")],
        fabric=fabric.summary(), notes=found.notes,
        snapshot_replays_identically=replayed.facts == found.facts and replayed.yaml() == found.yaml(),
        files=[path.name, "discovery.yaml", "discovery.facts.json", "sysfs-snapshot.tar.gz"])


def _timed(fn: Any, sync: Any, repeats: int) -> float:
    """Seconds per call: 2 warm-ups, then the mean of ``repeats`` calls."""
    for _ in range(2):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def ceilings(rec: Recorder, ctx: Ctx) -> None:
    import torch

    from benchmarks.inference_gpu.workload import gpu_peaks

    gpu = torch.cuda.is_available() and not ctx.tiny
    dev = torch.device("cuda", 0) if gpu else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(dev)) if gpu else (lambda: None)
    name = torch.cuda.get_device_name(dev) if gpu else "cpu"
    peak_flops, peak_bytes = gpu_peaks(name) if gpu else (None, None)
    rec.set(device=name, torch=torch.__version__, cuda=torch.version.cuda,
            datasheet={"dense_bf16_flops": peak_flops, "hbm_bytes_per_s": peak_bytes})
    n = int(ctx.size["matmul_n"])
    dtype = torch.bfloat16 if gpu else torch.float32
    a = torch.randn(n, n, dtype=dtype, device=dev)
    b = torch.randn(n, n, dtype=dtype, device=dev)
    s = _timed(lambda: torch.mm(a, b), sync, 10)
    rec.set(matmul={"n": n, "dtype": str(dtype).split(".")[-1], "seconds": s,
                    "tflops": 2 * n**3 / s / 1e12,
                    "of_datasheet": 2 * n**3 / s / peak_flops if peak_flops else None})
    del a, b
    nbytes = int(ctx.size["copy_mib"]) << 20
    x = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
    y = torch.empty_like(x)
    s = _timed(lambda: y.copy_(x), sync, 10)
    rec.set(copy_d2d={"bytes": nbytes, "seconds": s, "gbps_read_plus_write": 2 * nbytes / s / 1e9,
                      "of_datasheet": 2 * nbytes / s / peak_bytes if peak_bytes else None})
    if not gpu:
        rec.set(host_device="unavailable: no CUDA device")
        return
    out: dict[str, Any] = {"bytes": min(nbytes, 1 << 30)}
    x = x[: out["bytes"]]
    for pinned in (True, False):
        host = torch.empty(out["bytes"], dtype=torch.uint8, pin_memory=pinned)
        kind = "pinned" if pinned else "pageable"
        out[f"d2h_{kind}_gbps"] = out["bytes"] / _timed(lambda: host.copy_(x), sync, 3) / 1e9
        out[f"h2d_{kind}_gbps"] = out["bytes"] / _timed(lambda: x.copy_(host), sync, 3) / 1e9
        del host
    rec.set(host_device=out)
