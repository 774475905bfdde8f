"""Telemetry: pipeline snapshots as JSON lines and Prometheus text, plus NVML where present.

Each rank appends ``DIR/metrics/rank-RRRRR.jsonl`` (one snapshot a line) and atomically rewrites
``DIR/metrics/rank-RRRRR.prom`` (Prometheus text exposition, for a node-exporter textfile
collector). GPU utilisation comes from NVML (``nvidia-ml-py``) when a GPU and driver are present:
``nvmlDeviceGetUtilizationRates().gpu`` (time any kernel ran -- padded work included, so not a
measure of useful work) and, where the GPU supports GPM, SM utilisation. Without NVML the fields
are ``null``; nothing fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.events import MAX_EVENT_CHARS, JsonLinesWriter, cut_torn_tail, emit, make_event

__all__ = ["METRICS", "METRICS_LOG_MAX_BYTES", "MetricsWriter", "NvmlSampler", "job_totals", "nvml_target",
           "prometheus_text", "run_label", "textfile_name"]

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
    rank's pipeline time, rates = totals / that wall time, ``elapsed_s`` the slowest rank's time
    from its start (engine start-up and input costing included); ``padding_waste`` and
    ``prefill_padding_waste`` over the token slots of every rank (a rank that processed nothing
    weighs nothing), ``engine_busy_fraction`` the engine-step time of every rank over world size
    x the job's ``wall_s`` (the share of the job's GPU-time in the engine's step: a rank that had
    little or no work, or finished early, counts as idle for the rest of the job)."""
    job: dict[str, Any] = {k: sum(s.get(k) or 0 for s in snapshots) for k in _SUMMED}
    wall = max((s.get("wall_s") or 0.0 for s in snapshots), default=0.0)
    job["wall_s"] = wall
    job["elapsed_s"] = max((s.get("elapsed_s") or s.get("wall_s") or 0.0 for s in snapshots), default=0.0)
    for rate, total in (("items_per_s", "items_done"), ("input_tokens_per_s", "input_tokens"),
                        ("output_tokens_per_s", "output_tokens")):
        job[rate] = job[total] / wall if wall else 0.0
    padded = sum(s.get("padded_prefill_tokens") or 0 for s in snapshots)
    slots = padded + job["output_tokens"]
    job["padding_waste"] = (padded - job["input_tokens"]) / slots if slots else 0.0
    job["prefill_padding_waste"] = (padded - job["input_tokens"]) / padded if padded else 0.0
    gpu_s = len(snapshots) * wall  # every rank's GPU for the whole job: one that finished early idles
    job["engine_busy_fraction"] = (sum((s.get("engine_busy_fraction") or 0.0) * (s.get("wall_s") or 0.0)
                                       for s in snapshots) / gpu_s if gpu_s else 0.0)
    return job


def nvml_target(local_rank: int, visible: str | None, count: int) -> int | str | None:
    """The NVML device of the GPU the engine uses (``cuda:(local_rank % visible GPUs)``): a
    physical index, a ``GPU-``/``MIG-`` UUID (or UUID prefix) from ``CUDA_VISIBLE_DEVICES``, or
    ``None`` when no GPU is visible. NVML ignores ``CUDA_VISIBLE_DEVICES`` (which the TaskProlog
    reorders), so ``local_rank`` is not the NVML index. ``count``: the GPUs NVML sees. As CUDA
    reads the variable, an entry that is neither an index nor a UUID ends the list."""
    if visible is None:
        return local_rank % count if count > 0 else None
    ids: list[int | str] = []
    for raw in visible.split(","):
        entry = raw.strip()
        if entry.isdigit() and int(entry) < count:
            ids.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            ids.append(entry)
        else:
            break
    return ids[local_rank % len(ids)] if ids else None


class NvmlSampler:
    """GPU utilisation for this rank's device (:func:`nvml_target`); ``index`` is its physical
    NVML index (a MIG instance's: its GPU's), ``None`` without NVML. Every field is ``None``
    without NVML; :meth:`sample` raises what NVML raises (the writer degrades)."""

    def __init__(self, local_rank: int = 0, visible: str | None = None) -> None:
        self.handle: Any = None
        self.index: int | None = None
        self._gpm_prev: Any = None
        self.gpm = False
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            target = nvml_target(local_rank, visible, pynvml.nvmlDeviceGetCount())
            self.handle = None if target is None else self._handle(target)
            self.index = None if self.handle is None else self._physical_index(self.handle)
            self.gpm = bool(pynvml.nvmlGpmQueryDeviceSupport(self.handle).isSupportedDevice)
        except Exception:  # noqa: BLE001 - no driver, no GPU, no GPM: telemetry degrades
            self.gpm = False

    def _handle(self, target: int | str) -> Any:
        nv = self.nvml
        if isinstance(target, int):
            return nv.nvmlDeviceGetHandleByIndex(target)
        try:
            return nv.nvmlDeviceGetHandleByUUID(target)
        except nv.NVMLError:  # CUDA accepts a unique prefix of the UUID; NVML only the whole one
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                uuid = nv.nvmlDeviceGetUUID(handle)
                if (uuid.decode() if isinstance(uuid, bytes) else uuid).startswith(target):
                    return handle
            raise

    def _physical_index(self, handle: Any) -> int:
        nv = self.nvml
        try:
            if nv.nvmlDeviceIsMigDeviceHandle(handle):
                handle = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        except nv.NVMLError:  # a driver without MIG support: a whole GPU
            pass
        return int(nv.nvmlDeviceGetIndex(handle))

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
                    job_id: str | None = None, step: str | None = None, run: str | None = None) -> bytes:
    """The snapshot in Prometheus text format, labels ``rank``, ``run`` (:func:`run_label`), and
    under Slurm ``job_id`` (and ``step`` under srun); GPU series also ``gpu``.

    They are bounded: one run writes one file per rank, so they add at most ``ranks`` series per
    metric while the run's files are scraped (docs/metrics.md); ``run`` tells apart two runs on one
    node (one job, or none). Counters carry no ``_created`` series: the file is rewritten every
    interval, so a creation time would be the rewrite's.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import generate_latest

    base = {"rank": str(rank), **{k: v for k, v in (("job_id", job_id), ("step", step), ("run", run)) if v}}
    families: list[Metric] = []
    for key, (name, kind, doc, scale) in METRICS.items():
        value = snapshot.get(key)
        if value is None:
            continue
        labels = {**base, "gpu": str(gpu)} if name.startswith("DCGM_") and gpu is not None else base
        make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = make(name, doc, labels=list(labels))
        family.add_metric(list(labels.values()), value if kind == "counter" else value * scale)
        families.append(family)
    depth = GaugeMetricFamily(QUEUE_DEPTH, "Items waiting per pipeline stage", labels=[*base, "stage"])
    for stage, value in (snapshot.get("queue_depths") or {}).items():
        depth.add_metric([*base.values(), stage], value)
    families.append(depth)
    budget = snapshot.get("budget") or {}
    if budget:
        gauge = GaugeMetricFamily(BUDGET, "Admitted padded tokens in flight", labels=list(base))
        gauge.add_metric(list(base.values()), budget["in_flight"])
        families.append(gauge)

    class _Families:
        def collect(self) -> list[Metric]:
            return families

    return generate_latest(_Families())  # type: ignore[arg-type]


#: each rank's ``rank-RRRRR.jsonl`` is rotated to ``.jsonl.1`` at this size (as the agent's logs)
METRICS_LOG_MAX_BYTES = 64 << 20


def textfile_name(rank: int, job_tag: str) -> str:
    """The file a rank writes into a node-exporter textfile directory (one per run and rank):
    ``job_tag`` is ``JOB[.STEP]-RUN`` under Slurm, ``RUN`` outside (:class:`MetricsWriter`)."""
    return f"fabric-infer-{job_tag}-rank-{rank:05d}.prom"


def run_label(out: str | os.PathLike[str]) -> str:
    """The ``run`` label of a run's series: 12 hex digits of the SHA-256 of its resolved output
    directory (one per run, the same on every rank and attempt; two runs never share an output)."""
    return hashlib.sha256(os.fsencode(Path(out).resolve())).hexdigest()[:12]


class MetricsWriter:
    """Writes snapshots for one rank under ``DIR/metrics`` (and, with ``textfile_dir``, a
    world-readable copy of the ``.prom`` file there: :func:`textfile_name`).

    Telemetry never ends the run: a failed write (a full disk, a link in the way, an NVML error)
    emits one ``infer.telemetry_failed`` event, the write is retried at the next snapshot, and
    ``infer.telemetry_recovered`` follows when one succeeds again."""

    def __init__(self, out: str | os.PathLike[str], rank: int, *, local_rank: int = 0,
                 attempt: int | None = None, textfile_dir: str | os.PathLike[str] | None = None,
                 world_size: int = 1) -> None:
        self.dir = Path(out) / "metrics"
        self.rank, self.attempt, self.world_size = rank, attempt, world_size
        self.job_id = os.environ.get("SLURM_JOB_ID") or None  # label only under Slurm (bounded: docs/metrics.md)
        step = os.environ.get("SLURM_STEP_ID") or os.environ.get("SLURM_STEPID") or ""
        self.step = step if self.job_id and step.isdigit() else None  # srun's step; none under mpiexec
        self.run = run_label(out)  # two runs on one node (one job or none): distinct files and series
        job = f"{self.job_id}.{self.step}" if self.step else self.job_id
        tag = f"{job}-{self.run}" if job else self.run
        self.textfile = Path(textfile_dir) / textfile_name(rank, tag) if textfile_dir is not None else None
        self.jsonl = self.dir / f"rank-{rank:05d}.jsonl"
        self.lines: JsonLinesWriter | None = None
        self.failing: str | None = None  # the first error of the current failure streak
        self._bad = False  # this write failed somewhere
        self.nvml = NvmlSampler(local_rank, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.gpu = self.nvml.index

    def _sample(self) -> dict[str, float | None]:
        try:
            return self.nvml.sample()
        except Exception as exc:  # noqa: BLE001 - an NVML error: these fields null, the run goes on
            self._failed("nvml", exc)
            return {"gpu_util": None, "gpu_sm_util": None}

    def _failed(self, part: str, exc: BaseException) -> None:
        self._bad = True
        if self.failing is None:
            self.failing = f"{part}: {exc}"[:500]
            emit("infer.telemetry_failed", level="warning", rank=self.rank, part=part, error=str(exc)[:500],
                 note="the run goes on; telemetry is retried at the next snapshot")

    def _write_lines(self, event: dict[str, Any]) -> None:
        if self.lines is None:
            cut_torn_tail(self.jsonl)  # a write cut short before: the next line starts a line
            self.lines = JsonLinesWriter(self.jsonl, fsync=False, max_bytes=METRICS_LOG_MAX_BYTES,
                                         max_line=MAX_EVENT_CHARS)
        try:
            self.lines.write(event)
        except BaseException:
            lines, self.lines = self.lines, None  # reopened (its torn tail cut) at the next write
            with contextlib.suppress(OSError):
                lines.close()
            raise

    def _write_prom(self, text: bytes) -> None:
        write_atomic(self.dir / f"rank-{self.rank:05d}.prom", text, durable=False)
        if self.textfile is not None:  # read by a node-exporter running as another user
            write_atomic(self.textfile, text, durable=False, mode=0o644)

    def write(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        self._bad = False
        snap = {**snapshot, **self._sample(), "rank": self.rank, "attempt": self.attempt,
                "world_size": self.world_size}
        for part, step in (("metrics log", lambda: self._write_lines(make_event("infer.metrics", **snap))),
                           ("prometheus file", lambda: self._write_prom(
                               prometheus_text(snap, rank=self.rank, gpu=self.gpu, job_id=self.job_id,
                                               step=self.step, run=self.run)))):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a full disk, a link in the way: the run goes on
                self._failed(part, exc)
        if not self._bad and self.failing is not None:
            emit("infer.telemetry_recovered", rank=self.rank, after=self.failing)
            self.failing = None
        return snap

    def close(self) -> None:
        """Close the log and remove the textfile-directory copy (the job's series end with it)."""
        lines, self.lines = self.lines, None
        if lines is not None:
            with contextlib.suppress(OSError):
                lines.close()
        if self.textfile is not None:
            with contextlib.suppress(OSError):
                self.textfile.unlink(missing_ok=True)
