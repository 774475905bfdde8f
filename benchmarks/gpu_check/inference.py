"""Parts ``baseline``, ``fabric_1rank``, ``fabric_2ranks``, ``fabric_4ranks``, ``sdpa_cudnn`` and
``eager_decode``: the inference benchmark of ``benchmarks/inference_gpu`` cut into parts that
each fit a time budget.

``baseline`` builds the random-weight model (``1b`` preset, bf16, on the GPU), saves it with
``save_pretrained``, prepares the PyTorch engine and writes the seeded ragged workload (1,000
requests; ``--tiny``: 48) into ``WORK`` for the later parts, then times HF ``generate()`` static
batching at batch 128 on the first 256 requests (a fixed subset: 2 full batches; ``--tiny``: batch
8 on 16). The ``fabric_*`` parts run the harness (``run_job`` with the PyTorch engine) over the
whole workload, each checked exactly-once with ``merge_job``, with the engine's decode pass as
CUDA graphs (the default; how they were built is recorded as ``decode_graphs``); ``eager_decode``
is the ablation: the same run with the eager decode pass; ``sdpa_cudnn`` the same run with
torch's cuDNN attention backend allowed. Every row carries useful output
tokens/s, padding waste, NVML and GPM SM utilisation (``None`` where NVML is unavailable) and
useful FLOP/s and bytes/s against the datasheet peaks.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.part import Ctx, Recorder


def _eff_ctx(ctx: Ctx) -> dict[str, Any]:
    """What ``_efficiency`` of the inference_gpu benchmark needs: spec, dtype and peaks."""
    import torch

    from benchmarks.inference_gpu.workload import gpu_peaks
    from fabric_hpc.inference.engines import PRESETS

    gpu = torch.cuda.is_available() and not ctx.tiny
    name = torch.cuda.get_device_name(0) if gpu else None
    return {"spec": PRESETS[str(ctx.size["preset"])], "dtype": "bfloat16" if gpu else "float32",
            "peaks": gpu_peaks(name) if gpu else (None, None), "gpu": gpu, "gpu_name": name}


def _workload(ctx: Ctx) -> list[Any]:
    from benchmarks.inference_gpu.workload import make_workload
    from fabric_hpc.inference.engines import PRESETS

    spec = PRESETS[str(ctx.size["preset"])]
    return make_workload(int(ctx.size["requests"]), spec.vocab_size, tiny=ctx.tiny)


def _nvml_state(sampler: Any) -> str:
    return "available" if sampler.nvml.handle is not None else "unavailable: no NVML device"


def baseline(rec: Recorder, ctx: Ctx) -> None:
    import time

    from benchmarks.inference_gpu.__main__ import _efficiency, _setup
    from benchmarks.inference_gpu.baseline import padding_waste, run_generate
    from benchmarks.inference_gpu.workload import UtilSampler, write_spool

    t0 = time.perf_counter()
    setup = _setup(argparse.Namespace(tiny=ctx.tiny), ctx.work)  # model + WORK/engine.json
    reqs = _workload(ctx)
    write_spool(reqs, ctx.work / "spool")
    spec = setup["spec"]
    rec.set(phase="model saved, workload written", setup_s=time.perf_counter() - t0,
            model={"preset": ctx.size["preset"], "parameters": spec.param_count(),
                   "dtype": setup["dtype"], "device": str(setup["device"])},
            workload={"requests": len(reqs), "prompt_tokens": sum(len(r.prompt) for r in reqs),
                      "output_tokens": sum(r.out for r in reqs)})
    batch, n = int(ctx.size["baseline_batch"]), int(ctx.size["baseline_requests"])
    sub = reqs[:n]
    run_generate(setup["model"], sub[:2], 2, setup["device"])  # warm-up, not timed
    sampler = UtilSampler(0)
    wall = tokens = steps = 0
    with sampler:
        for i in range(0, len(sub), batch):
            got = run_generate(setup["model"], sub[i:i + batch], batch, setup["device"])
            wall, tokens, steps = wall + got["wall_s"], tokens + got["output_tokens"], steps + got["steps"]
            rec.set(phase=f"baseline: {i + batch} of {len(sub)} requests", partial_wall_s=wall)
    row = {"requests": len(sub), "batch": batch, "wall_s": wall, "output_tokens": tokens,
           "output_tokens_per_s": tokens / wall, "padding_waste": padding_waste(sub, batch)[0],
           "steps": steps, **sampler.result(), "nvml": _nvml_state(sampler)}
    _efficiency(row, _eff_ctx(ctx), sub)
    rec.set(row=row, subset=f"the first {len(sub)} of {len(reqs)} requests at batch {batch}")


def _harness_row(snap: dict[str, Any], sampler: Any, ctx: Ctx, reqs: list[Any]) -> dict[str, Any]:
    from benchmarks.inference_gpu.__main__ import _efficiency

    keep = ("wall_s", "items_done", "input_tokens", "output_tokens", "output_tokens_per_s",
            "padding_waste", "prefill_padding_waste", "engine_busy_fraction", "engine_steps",
            "per_rank_tokens_per_s")
    row = {k: snap[k] for k in keep if k in snap}
    merged = snap["merged"]
    row.update(requests=snap["items_done"], merged_items=merged["items"],
               exactly_once=merged["items"] == len(reqs) == snap["items_done"],
               **sampler.result(), nvml=_nvml_state(sampler))
    _efficiency(row, _eff_ctx(ctx), reqs)
    return row


def _need_model(ctx: Ctx) -> Path:
    spool = ctx.work / "spool"
    if not (ctx.work / "engine.json").exists() or not (spool / "work.jsonl").exists():
        raise RuntimeError("no model/workload in the work folder: the baseline part did not get "
                           "as far as saving them")
    return spool


def _single(rec: Recorder, ctx: Ctx, name: str, decode: str) -> None:
    from benchmarks.inference_gpu.__main__ import _fabric_single
    from benchmarks.inference_gpu.workload import UtilSampler

    spool = _need_model(ctx)
    shutil.rmtree(ctx.work / name, ignore_errors=True)  # a rerun must not resume an earlier run
    sampler = UtilSampler(0)
    rec.set(phase="harness running")
    events = _EventTap("infer.engine.decode_graphs", "infer.engine.stats")
    with sampler, events:
        snap = _fabric_single(ctx.work, spool, decode, name=name)
    rec.set(row=_harness_row(snap, sampler, ctx, _workload(ctx)), decode=decode,
            decode_graphs=events.got.get("infer.engine.decode_graphs"),
            engine_stats=events.got.get("infer.engine.stats"))


class _EventTap(logging.Handler):
    """The last payload of each named structured event while in use (fabric_hpc.events)."""

    def __init__(self, *names: str) -> None:
        super().__init__(logging.INFO)
        self.names, self.got = set(names), {}

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if isinstance(event, dict) and event.get("event") in self.names:
            self.got[event["event"]] = event

    def __enter__(self) -> _EventTap:
        log = logging.getLogger("fabric_hpc.events")
        self._level = log.level
        log.setLevel(logging.INFO)
        log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        log = logging.getLogger("fabric_hpc.events")
        log.removeHandler(self)
        log.setLevel(self._level)


def fabric_1rank(rec: Recorder, ctx: Ctx) -> None:
    _single(rec, ctx, "fabric-1", "graphs")


#: Second try for Open MPI on a host with only a loopback interface or no CMA (the lent machine's
#: MPI is Open MPI; these are ignored by MPICH and by Open MPI versions without the variable).
OMPI_FALLBACK = {"OMPI_MCA_oob_tcp_if_include": "lo", "PRTE_MCA_oob_tcp_if_include": "lo",
                 "OMPI_MCA_btl_tcp_if_include": "lo",
                 "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def _mpiexec_version() -> str | None:
    import subprocess

    from benchmarks.inference_gpu.__main__ import mpiexec_path

    exe = mpiexec_path()
    if not exe:
        return None
    got = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return f"{exe}: " + ((got.stdout or got.stderr).strip().splitlines() or ["?"])[0]


def fabric_2ranks(rec: Recorder, ctx: Ctx) -> None:
    _mpi_ranks(rec, ctx, int(ctx.size["ranks"]))


def fabric_4ranks(rec: Recorder, ctx: Ctx) -> None:
    """Four harness ranks on one GPU: the second lease found the engine host-bound (2 ranks gave
    1.8x one rank's tokens/s), so more ranks per GPU is the harness's own lever."""
    _mpi_ranks(rec, ctx, 2 * int(ctx.size["ranks"]))


def _mpi_ranks(rec: Recorder, ctx: Ctx, ranks: int) -> None:
    import os

    from benchmarks.inference_gpu.__main__ import _fabric_mpi
    from benchmarks.inference_gpu.workload import UtilSampler

    spool = _need_model(ctx)
    sampler = UtilSampler(0)
    rec.set(phase=f"mpiexec -n {ranks} running", ranks=ranks, mpiexec=_mpiexec_version())
    for attempt in (1, 2):
        shutil.rmtree(ctx.work / f"fabric-{ranks}", ignore_errors=True)  # never resume
        try:
            with sampler:
                snap = _fabric_mpi(ctx.work, spool, ranks, "graphs")
            break
        except SystemExit as exc:  # _fabric_mpi's "mpiexec run failed" with the ranks' stderr
            if attempt == 2 or not str(exc).startswith("mpiexec run failed"):
                raise  # (a SIGTERM at the budget also arrives as SystemExit)
            rec.set(first_attempt_error=str(exc)[-3000:], phase="retrying with OMPI_FALLBACK")
            os.environ.update(OMPI_FALLBACK)
    rec.set(attempts=attempt)
    if "skipped" in snap:
        rec.set(skipped=snap["skipped"])
        return
    rec.set(row=_harness_row(snap, sampler, ctx, _workload(ctx)))


def eager_decode(rec: Recorder, ctx: Ctx) -> None:
    """The ablation of ``fabric_1rank``: the same run with the eager decode pass; its outputs
    compared with fabric_1rank's (greedy decoding: equal unless bf16 rounding flips a near-tie)."""
    _single(rec, ctx, "fabric-eager", "eager")
    rec.set(same_as_default=compare_outputs(ctx.work / "fabric-1", ctx.work / "fabric-eager"))


def sdpa_cudnn(rec: Recorder, ctx: Ctx) -> None:
    """The ablation of the engine's attention backends: ``fabric_1rank`` with torch's cuDNN
    attention allowed (torch's own choice, which prefers it on Hopper with cuDNN >= 9.15)."""
    _single(rec, ctx, "fabric-cudnn", "cudnn")
    rec.set(same_as_default=compare_outputs(ctx.work / "fabric-1", ctx.work / "fabric-cudnn"))


def compare_outputs(a: Path, b: Path) -> dict[str, Any] | None:
    """How far two runs' ``results.jsonl`` agree: requests with identical tokens, and the mean
    share of each output that is identical before the first difference."""
    def load(d: Path) -> dict[str, list[int]]:
        with (d / "results.jsonl").open(encoding="utf-8") as fh:
            return {r["id"]: r["tokens"] for r in map(json.loads, fh)}

    try:
        x, y = load(a), load(b)
    except (OSError, ValueError, KeyError):
        return None
    ids = sorted(set(x) & set(y))
    if not ids:
        return None
    prefix = []
    for i in ids:
        p, q = x[i], y[i]
        n = next((k for k, (s, t) in enumerate(zip(p, q)) if s != t), min(len(p), len(q)))
        prefix.append(n / max(len(p), len(q), 1))
    return {"requests": len(ids), "identical": sum(x[i] == y[i] for i in ids) / len(ids),
            "mean_common_prefix": sum(prefix) / len(prefix)}


def rows_for_table(parts: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The inference parts as rows of ``benchmarks.inference_gpu.render``."""
    names = (("baseline", "baseline generate() B={batch}"),
             ("fabric_1rank", "fabric harness + PyTorch engine, 1 rank"),
             ("fabric_2ranks", "fabric, 2 MPI ranks sharing one device"),
             ("fabric_4ranks", "fabric, 4 MPI ranks sharing one device"),
             ("sdpa_cudnn", "fabric, 1 rank, cuDNN attention allowed (ablation)"),
             ("eager_decode", "fabric, 1 rank, eager decode (ablation)"))
    rows = []
    for part, label in names:
        got = parts.get(part, {})
        row = got.get("row")
        label = label.format(batch=(row or {}).get("batch", "?"))
        if row:
            rows.append((label, row))
        elif got:
            why = got.get("skipped") or got.get("status", "not run")
            rows.append((label, {"skipped": json.dumps(why)[1:-1]}))
    return rows
