"""Part ``prefill_probe``: host and device time of one prefill pass per attention backend, on
shapes the process has not seen and on the same shapes again.

The second lease found each prefill pass taking ~45 ms of host time with the GPU mostly idle.
torch >= 2.10 prefers its cuDNN attention backend on Hopper once the bundled cuDNN is >= 9.15,
and cuDNN builds a graph for every new shape; the engine's prefill shapes (prompts per group x
longest prompt) are almost all new. This part measures that directly: for each setting (torch's
own choice, then each backend alone, then the engine's default of every backend but cuDNN) it
runs :data:`SHAPES` prefill passes of shapes new to the process (each setting its own), then the
same shapes again, and records per pass the host time to issue it and the wall time until the
device finished. A backend that cannot run the pass (the efficient kernel has no grouped-query
form) records its error.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from benchmarks.gpu_check.part import Ctx, Recorder

SHAPES = 8  # --tiny: 3
#: setting -> the SDPA backends it allows (None: torch's own choice)
SETTINGS: dict[str, tuple[str, ...] | None] = {
    "torch default": None,
    "cudnn only": ("CUDNN_ATTENTION",),
    "flash only": ("FLASH_ATTENTION",),
    "efficient only": ("EFFICIENT_ATTENTION",),
    "math only": ("MATH",),
    "engine default (no cudnn)": ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"),
}


def _shapes(n: int, tiny: bool, taken: set[tuple[int, int]], rng: random.Random) -> list[tuple[int, int]]:
    lo, hi = (8, 60) if tiny else (128, 1000)
    out: list[tuple[int, int]] = []
    while len(out) < n:
        shape = (rng.randint(1, 3), rng.randint(lo, hi))
        if shape not in taken:
            taken.add(shape)
            out.append(shape)
    return out


def _time_passes(model: Any, cache: Any, shapes: list[tuple[int, int]], device: Any) -> dict[str, float]:
    import torch

    host, wall = [], []
    for n, plen in shapes:
        tokens = torch.randint(0, model.spec.vocab_size, (n, plen), device=device)
        lengths = torch.full((n,), plen, device=device)
        slots = torch.arange(n, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = model.prefill(tokens, lengths, slots, cache)
        t1 = time.perf_counter()
        out.sum().item()  # waits for the device
        t2 = time.perf_counter()
        host.append(t1 - t0)
        wall.append(t2 - t0)
    return {"host_ms_mean": 1e3 * sum(host) / len(host), "host_ms_max": 1e3 * max(host),
            "wall_ms_mean": 1e3 * sum(wall) / len(wall)}


def prefill_probe(rec: Recorder, ctx: Ctx) -> None:
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from benchmarks.gpu_check.inference import _need_model
    from fabric_hpc.inference import build_engine, load_engine_config

    _need_model(ctx)
    config = json.loads((ctx.work / "engine.json").read_text())
    engine = build_engine(load_engine_config(config), stop_at_eos=False, cuda_graphs=False,
                          sdpa_cudnn=True)  # the probe sets the backends itself
    model, cache, device = engine.model, engine.cache, engine.device
    rng, taken = random.Random(0), set()
    with torch.inference_mode():
        _time_passes(model, cache, _shapes(1, ctx.tiny, taken, rng), device)  # warm-up, not kept
        settings: dict[str, Any] = {}
        for name, backends in SETTINGS.items():
            shapes = _shapes(3 if ctx.tiny else SHAPES, ctx.tiny, taken, rng)
            allowed = (contextlib.nullcontext() if backends is None else
                       sdpa_kernel([getattr(SDPBackend, b) for b in backends]))
            got: dict[str, Any] = {"backends": backends, "shapes": shapes}
            try:
                with allowed:
                    got["new"] = _time_passes(model, cache, shapes, device)
                    got["repeat"] = _time_passes(model, cache, shapes, device)
            except RuntimeError as exc:  # "No available kernel" and the like
                got["error"] = str(exc).splitlines()[0][:300]
            settings[name] = got
            rec.set(phase=f"{name} done", settings=settings)
    engine.close()
    rec.set(torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
            device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")


def probe_md(result: dict[str, Any]) -> str:
    """A table for gpu_check.md: ms per prefill pass by setting, new shapes and repeated."""
    settings = result.get("settings")
    if not settings:
        return ""
    lines = [f"**Prefill pass by attention backend** (torch {result.get('torch')}, cuDNN "
             f"{result.get('cudnn')}; each setting's own new shapes, then the same again; ms per "
             "pass):", "", "| setting | new: host | new: wall | repeated: host | repeated: wall |",
             "|---|---:|---:|---:|---:|"]
    for name, got in settings.items():
        if "error" in got:
            lines.append(f"| {name} | cannot run: {got['error'][:120]} | | | |")
            continue
        new, rep = got.get("new", {}), got.get("repeat", {})
        lines.append(f"| {name} | {new.get('host_ms_mean', 0):.1f} | {new.get('wall_ms_mean', 0):.1f}"
                     f" | {rep.get('host_ms_mean', 0):.1f} | {rep.get('wall_ms_mean', 0):.1f} |")
    return "\n".join(lines)
