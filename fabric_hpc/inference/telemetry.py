"""Telemetry: pipeline snapshots as JSON lines and Prometheus text, plus NVML where present.

Each rank appends ``DIR/metrics/rank-RRRRR.jsonl`` (one snapshot a line) and atomically rewrites
``DIR/metrics/rank-RRRRR.prom`` (Prometheus text exposition, for a node-exporter textfile
collector). GPU utilisation comes from NVML (``nvidia-ml-py``) when a GPU and driver are present:
``nvmlDeviceGetUtilizationRates().gpu`` (time any kernel ran -- padded work included, so not a
measure of useful work) and, where the GPU supports GPM, SM utilisation. Without NVML the fields
are ``null``; nothing fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.events import JsonLinesWriter, make_event

__all__ = ["METRICS", "MetricsWriter", "NvmlSampler", "job_totals", "prometheus_text"]

# snapshot key -> (Prometheus name, type, help, scale). Names follow Prometheus conventions (counters
# ``_total``, ratios ``_ratio``, per-second rates ``_per_second``); the two GPU gauges carry the DCGM
# exporter's names and units, since they measure the same thing (docs/metrics.md).
METRICS: dict[str, tuple[str, str, str, float]] = {
    "items_done": ("fabric_infer_items_completed_total", "counter", "Items completed and journalled", 1.0),
    "items_in": ("fabric_infer_items_admitted_total", "counter", "Items admitted", 1.0),
    "input_tokens": ("fabric_infer_input_tokens_total", "counter", "Prompt tokens processed", 1.0),
    "output_tokens": ("fabric_infer_output_tokens_total", "counter", "Generated tokens", 1.0),
    "padding_waste": ("fabric_infer_padding_waste_ratio", "gauge", "Padding slots / processed token slots", 1.0),
    "prefill_padding_waste": ("fabric_infer_prefill_padding_waste_ratio", "gauge", "Padding slots / prefill slots",
                              1.0),
    "engine_busy_fraction": ("fabric_infer_engine_busy_ratio", "gauge", "Fraction of wall time in engine step()", 1.0),
    "items_per_s": ("fabric_infer_items_per_second", "gauge", "Completed items per second", 1.0),
    "input_tokens_per_s": ("fabric_infer_input_tokens_per_second", "gauge", "Prompt tokens per second", 1.0),
    "output_tokens_per_s": ("fabric_infer_output_tokens_per_second", "gauge", "Generated tokens per second", 1.0),
    "gpu_util": ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %), NVML utilization.gpu", 1.0),
    "gpu_sm_util": ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "Ratio of cycles an SM has at least 1 warp assigned "
                    "(NVML GPM SM utilisation / 100)", 0.01),
}
#: the other series: queue depth per stage and the token budget in flight
QUEUE_DEPTH, BUDGET = "fabric_infer_queue_depth", "fabric_infer_budget_in_flight_tokens"


_SUMMED = ("items_in", "items_done", "input_tokens", "output_tokens", "engine_steps")


def job_totals(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole job from every rank's final snapshot: counts summed, ``wall_s`` the slowest
    rank's, rates = totals / that wall time, ``padding_waste`` and ``engine_busy_fraction`` the
    mean over ranks."""
    job: dict[str, Any] = {k: sum(s.get(k) or 0 for s in snapshots) for k in _SUMMED}
    wall = max((s.get("wall_s") or 0.0 for s in snapshots), default=0.0)
    job["wall_s"] = wall
    for rate, total in (("items_per_s", "items_done"), ("input_tokens_per_s", "input_tokens"),
                        ("output_tokens_per_s", "output_tokens")):
        job[rate] = job[total] / wall if wall else 0.0
    for key in ("padding_waste", "engine_busy_fraction"):
        job[key] = sum(s.get(key) or 0.0 for s in snapshots) / max(len(snapshots), 1)
    return job


class NvmlSampler:
    """GPU utilisation for one device; every method returns ``None`` without NVML."""

    def __init__(self, index: int = 0) -> None:
        self.handle: Any = None
        self._gpm_prev: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.gpm = bool(pynvml.nvmlGpmQueryDeviceSupport(self.handle).isSupportedDevice)
        except Exception:  # noqa: BLE001 - no driver, no GPU, no GPM: telemetry degrades
            self.handle, self.gpm = None, False

    def sample(self) -> dict[str, float | None]:
        if self.handle is None:
            return {"gpu_util": None, "gpu_sm_util": None}
        nv = self.nvml
        util = float(nv.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        sm = None
        if self.gpm:
            try:
                cur = nv.nvmlGpmSampleAlloc()
                nv.nvmlGpmSampleGet(self.handle, cur)
                if self._gpm_prev is not None:
                    m = nv.c_nvmlGpmMetricsGet_t()
                    m.version = nv.NVML_GPM_METRICS_GET_VERSION
                    m.numMetrics = 1
                    m.sample1, m.sample2 = self._gpm_prev, cur
                    m.metrics[0].metricId = nv.NVML_GPM_METRIC_SM_UTIL
                    nv.nvmlGpmMetricsGet(m)
                    sm = float(m.metrics[0].value)
                    nv.nvmlGpmSampleFree(self._gpm_prev)
                self._gpm_prev = cur
            except Exception:  # noqa: BLE001
                sm = None
        return {"gpu_util": util, "gpu_sm_util": sm}


def prometheus_text(snapshot: dict[str, Any], *, rank: int, gpu: int | None = None,
                    job_id: str | None = None) -> bytes:
    """The snapshot in Prometheus text format, labels ``rank`` (and ``job_id`` under Slurm; GPU series: ``gpu``).

    ``job_id`` is bounded: one job writes one file per rank, so it adds at most ``ranks`` series per
    metric while the job's files are scraped (docs/metrics.md).
    """
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    reg = CollectorRegistry()
    base = {"rank": str(rank), **({"job_id": job_id} if job_id else {})}
    for key, (name, kind, doc, scale) in METRICS.items():
        value = snapshot.get(key)
        if value is None:
            continue
        labels = {**base, "gpu": str(gpu)} if name.startswith("DCGM_") and gpu is not None else base
        if kind == "counter":
            Counter(name.removesuffix("_total"), doc, list(labels), registry=reg).labels(**labels).inc(value)
        else:
            Gauge(name, doc, list(labels), registry=reg).labels(**labels).set(value * scale)
    depth = Gauge(QUEUE_DEPTH, "Items waiting per pipeline stage", [*base, "stage"], registry=reg)
    for stage, value in (snapshot.get("queue_depths") or {}).items():
        depth.labels(**base, stage=stage).set(value)
    budget = snapshot.get("budget") or {}
    if budget:
        Gauge(BUDGET, "Admitted padded tokens in flight", list(base), registry=reg).labels(**base).set(
            budget["in_flight"])
    return generate_latest(reg)


class MetricsWriter:
    """Writes snapshots for one rank under ``DIR/metrics``."""

    def __init__(self, out: str | os.PathLike[str], rank: int, *, gpu_index: int = 0,
                 attempt: int | None = None) -> None:
        self.dir = Path(out) / "metrics"
        self.rank, self.gpu, self.attempt = rank, gpu_index, attempt
        self.job_id = os.environ.get("SLURM_JOB_ID") or None  # label only under Slurm (bounded: docs/metrics.md)
        self.lines = JsonLinesWriter(self.dir / f"rank-{rank:05d}.jsonl", fsync=False)
        self.nvml = NvmlSampler(gpu_index)

    def write(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        snap = {**snapshot, **self.nvml.sample(), "rank": self.rank, "attempt": self.attempt}
        self.lines.write(make_event("infer.metrics", **snap))
        prom = self.dir / f"rank-{self.rank:05d}.prom"
        write_atomic(prom, prometheus_text(snap, rank=self.rank, gpu=self.gpu, job_id=self.job_id), durable=False)
        return snap

    def close(self) -> None:
        self.lines.close()
