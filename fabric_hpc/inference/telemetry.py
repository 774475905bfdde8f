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

from fabric_hpc.events import JsonLinesWriter, make_event

__all__ = ["MetricsWriter", "NvmlSampler", "prometheus_text"]

_GAUGES = {
    "items_done": "Items completed and journalled",
    "items_in": "Items admitted",
    "input_tokens": "Prompt tokens processed",
    "output_tokens": "Generated tokens",
    "padding_waste": "Padding slots / processed token slots",
    "prefill_padding_waste": "Padding slots / prefill slots",
    "engine_busy_fraction": "Fraction of wall time the engine spent in step()",
    "items_per_s": "Completed items per second",
    "input_tokens_per_s": "Prompt tokens per second",
    "output_tokens_per_s": "Generated tokens per second",
    "gpu_util": "NVML GPU utilisation percent",
    "gpu_sm_util": "NVML GPM SM utilisation percent",
}


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


def prometheus_text(snapshot: dict[str, Any], *, rank: int) -> bytes:
    """The snapshot in Prometheus text format (``fabric_infer_*`` gauges, label ``rank``)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    for key, doc in _GAUGES.items():
        value = snapshot.get(key)
        if value is not None:
            Gauge(f"fabric_infer_{key}", doc, ["rank"], registry=reg).labels(str(rank)).set(value)
    depth = Gauge("fabric_infer_queue_depth", "Items waiting per pipeline stage", ["rank", "stage"],
                  registry=reg)
    for stage, value in (snapshot.get("queue_depths") or {}).items():
        depth.labels(str(rank), stage).set(value)
    budget = snapshot.get("budget") or {}
    if budget:
        Gauge("fabric_infer_budget_in_flight_tokens", "Admitted padded tokens in flight", ["rank"],
              registry=reg).labels(str(rank)).set(budget["in_flight"])
    return generate_latest(reg)


class MetricsWriter:
    """Writes snapshots for one rank under ``DIR/metrics``."""

    def __init__(self, out: str | os.PathLike[str], rank: int, *, gpu_index: int = 0) -> None:
        self.dir = Path(out) / "metrics"
        self.rank = rank
        self.lines = JsonLinesWriter(self.dir / f"rank-{rank:05d}.jsonl", fsync=False)
        self.nvml = NvmlSampler(gpu_index)

    def write(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        snap = {**snapshot, **self.nvml.sample(), "rank": self.rank}
        self.lines.write(make_event("infer.metrics", **snap))
        prom = self.dir / f"rank-{self.rank:05d}.prom"
        tmp = prom.with_suffix(".prom.tmp")
        tmp.write_bytes(prometheus_text(snap, rank=self.rank))
        os.replace(tmp, prom)
        return snap

    def close(self) -> None:
        self.lines.close()
