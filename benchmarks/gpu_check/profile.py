"""Part ``profile_steps``: where the PyTorch engine's step spends its host time, op by op.

The second lease found the engine host-bound in its prefill passes (~45 ms each, far more than
their kernel launches; docs/benchmarks.md, "GPU check, second run") without saying which
operation waits. This part drives the engine the way the harness does (``Scheduler`` over shape
lanes, no threads) on the check's workload: ``WARMUP_STEPS`` steps, then ``PROFILED_STEPS`` under
``torch.profiler`` (CPU and, on a GPU, CUDA activity). It records the top operations by self
host time and by self device time, the CUDA runtime calls that block the host (synchronise,
copies from pageable memory), and the engine's host time per pass over the profiled steps
(the profiler's own overhead included: compare shares, not seconds, with the harness runs).
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.gpu_check.part import Ctx, Recorder

WARMUP_STEPS, PROFILED_STEPS, TOP = 20, 40, 25   # --tiny: 2 and 10 (48 requests)
#: CUDA runtime calls whose host time means the host waited for the device
BLOCKING = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaMemcpy",
            "cudaEventSynchronize", "cudaMalloc", "cudaFree", "cudaHostAlloc")


def _rows(events: Any, key: str, top: int) -> list[dict[str, Any]]:
    rows = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:top]
    return [{"op": e.key, "calls": e.count,
             "self_host_us": round(e.self_cpu_time_total, 1),
             "host_total_us": round(e.cpu_time_total, 1),
             "self_device_us": round(getattr(e, "self_device_time_total", 0.0), 1)}
            for e in rows if getattr(e, key, 0) > 0]


def _drive(sched: Any, steps: int) -> int:
    """Up to ``steps`` engine steps through the harness's scheduler; steps done."""
    done = 0
    while done < steps and (sched.waiting() or sched.in_engine):
        sched.fill()
        sched.step()
        done += 1
    return done


def profile_steps(rec: Recorder, ctx: Ctx) -> None:
    import torch

    from benchmarks.gpu_check.inference import _need_model, _workload
    from fabric_hpc.inference import build_engine, load_engine_config
    from fabric_hpc.inference.intake import WorkItem
    from fabric_hpc.inference.lanes import ShapeLanes
    from fabric_hpc.inference.scheduler import Scheduler

    _need_model(ctx)
    config = json.loads((ctx.work / "engine.json").read_text())
    engine = build_engine(load_engine_config(config), stop_at_eos=False)
    reqs = _workload(ctx)
    sched = Scheduler(engine, ShapeLanes(128, max_age=8192))
    for i, r in enumerate(reqs):
        sched.push(WorkItem(r.id, r.prompt, r.out, arrival=i))
    rec.set(phase="warm-up", graphs=getattr(engine, "graph_stats", None))
    _drive(sched, 2 if ctx.tiny else WARMUP_STEPS)
    before = dict(engine.host_s)
    groups0 = sched.tokens.groups
    acts = [torch.profiler.ProfilerActivity.CPU]
    if engine.device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    rec.set(phase="profiling")
    with torch.profiler.profile(activities=acts) as prof:
        steps = _drive(sched, 10 if ctx.tiny else PROFILED_STEPS)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
    events = prof.key_averages()
    host = {k: round(engine.host_s[k] - before[k], 4) for k in before}
    engine.close()
    rec.set(steps=steps, prefill_groups=sched.tokens.groups - groups0, engine_host_s=host,
            top_by_host=_rows(events, "self_cpu_time_total", TOP),
            top_by_device=_rows(events, "self_device_time_total", TOP // 2),
            blocking=[r for r in _rows(events, "self_cpu_time_total", 10 ** 6)
                      if r["op"] in BLOCKING])


def profile_md(result: dict[str, Any]) -> str:
    """A few lines for gpu_check.md: the engine's split and the heaviest host operations."""
    if "top_by_host" not in result:
        return ""
    h = result.get("engine_host_s", {})
    lines = [f"**Profiled engine steps** ({result.get('steps')} steps, "
             f"{result.get('prefill_groups')} prefill groups): issuing decode {h.get('decode')} s, "
             f"prefill {h.get('prefill')} s, waiting {h.get('wait')} s. Heaviest by self host "
             "time:", "", "| op | calls | self host ms | self device ms |", "|---|---:|---:|---:|"]
    for r in result["top_by_host"][:10]:
        lines.append(f"| `{r['op']}` | {r['calls']} | {r['self_host_us'] / 1e3:.1f} | "
                     f"{r['self_device_us'] / 1e3:.1f} |")
    blocking = ", ".join(f"`{r['op']}` {r['calls']}× {r['self_host_us'] / 1e3:.1f} ms"
                         for r in result.get("blocking", [])) or "none"
    return "\n".join(lines) + f"\n\nBlocking runtime calls: {blocking}."
