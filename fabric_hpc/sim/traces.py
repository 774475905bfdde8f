"""Trace readers: Tiresias CSV, Alibaba openb CSV, the Standard Workload Format, and a dispatcher.

Every reader returns ``list[Job]`` with submit times shifted so the first job arrives at 0. Rows
that cannot become a GPU job (no GPUs, no duration) are skipped and counted in the ``skipped``
attribute of the returned :class:`Trace` list; malformed files raise ConfigError with the line.

* **Tiresias** (``job_id,num_gpu,submit_time,iterations,model_name,duration,interval``, from the
  Tiresias NSDI'19 simulator): GPUs > ``gpus_per_host`` become ``nodes × gpus_per_host`` gangs;
  ``model_name`` sets the communication sensitivity (VGG/AlexNet high, ResNet/Inception lower, as
  Tiresias' skew analysis found); walltime = duration × ``walltime_factor``.
* **Alibaba openb** (``name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,
  creation_time,deletion_time,scheduled_time``, from the FGD ATC'23 traces): ``creation_time`` →
  submit, ``deletion_time − creation_time`` → duration; ``qos`` LS/Guaranteed → ``high``,
  Burstable → ``normal``, BE → ``spot``; pods without GPUs are skipped; a fractional GPU
  (``gpu_milli < 1000``) counts as a whole GPU (placement allocates whole GPUs).
* **SWF** (Parallel Workloads Archive, 18 whitespace-separated fields, ``;`` comments): field 2
  submit, 4 run time, 5 allocated processors (or 8 requested), 9 requested time, 12 user,
  13 group (→ account), 15 queue (→ tier via ``queue_tiers``); processors / ``procs_per_gpu`` = GPUs.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inputs import check_path, finite, read_text
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import Job


#: Largest submit time or duration a trace may give (about 317 years, in seconds).
MAX_TRACE_SECONDS = 1e10
#: Largest gang a trace row may ask for.
MAX_JOB_GPUS = 1_000_000


class Trace(list):
    """A list of jobs with ``name`` and ``skipped`` (rows that were not GPU jobs)."""

    def __init__(self, jobs: list[Job], name: str, skipped: int = 0) -> None:
        super().__init__(jobs)
        self.name, self.skipped = name, skipped


def gang_request(gpus: int, gpus_per_host: int = 8) -> Request:
    """One host for ≤ ``gpus_per_host`` GPUs, else full hosts (``nodes × gpus_per_host``)."""
    try:
        if gpus <= gpus_per_host:
            return Request(nodes=1, gpus_per_node=gpus)
        return Request(nodes=math.ceil(gpus / gpus_per_host), gpus_per_node=gpus_per_host)
    except ConfigError:  # Request's own wording names its fields, not the trace's job
        raise ConfigError(f"a job of {gpus} GPUs on hosts of {gpus_per_host} GPUs is not a valid gang",
                          hint="GPUs and GPUs per host must be whole numbers ≥ 1") from None


def _open(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no trace file {p}", hint="give the path of a trace file (the source tree has samples in "
                                                       "data/traces/), or synthetic:jobs=N for a generated workload")
    return check_path(p, what="trace file")


def _lines(p: Path) -> list[str]:
    """The lines of a trace file (size-limited, UTF-8 checked: see fabric_hpc.inputs)."""
    return read_text(p, what="trace file").splitlines()


def _times(p: Path, n: int, **values: float) -> None:
    """Every time of a row must be a finite, non-negative number of seconds."""
    for name, v in values.items():
        if not math.isfinite(v) or v < 0 or v > MAX_TRACE_SECONDS:
            raise ConfigError(f"{p}:{n}: {name}={v!r} is not a time in 0..{MAX_TRACE_SECONDS:.0e} s",
                              hint="fix or drop that row; times are finite seconds")


def _scale(time_scale: float) -> float:
    return finite(time_scale, "time_scale", lo=0, hi=1e6, lo_open=True)


def _host_size(gpus_per_host: int) -> int:
    if not isinstance(gpus_per_host, int) or not 1 <= gpus_per_host <= 1024:
        raise ConfigError(f"gpus_per_host={gpus_per_host!r} must be a whole number in 1..1024",
                          hint="give the GPUs per host of the fabric (--gpus-per-host)")
    return gpus_per_host


class _Csv:
    """csv.DictReader over a checked file whose csv.Error (a huge field...) is a ConfigError."""

    def __init__(self, p: Path) -> None:
        self.p, self.reader = p, csv.DictReader(_lines(p))
        self.fieldnames = self._guard(lambda: self.reader.fieldnames)
        if not self.fieldnames:  # None for no line at all, [] for blank lines
            raise ConfigError(f"{p}: the trace file is empty or does not start with its header line",
                              hint="give a trace with a header and jobs (docs/scheduler.md)")

    def _guard(self, get):  # noqa: ANN001, ANN202
        try:
            return get()
        except csv.Error as exc:
            raise ConfigError(f"{self.p}:{self.reader.line_num}: not valid CSV ({exc})") from None

    def __iter__(self):  # noqa: ANN204
        while True:
            row = self._guard(lambda: next(self.reader, None))
            if row is None:
                return
            yield row


def _csv(p: Path) -> _Csv:
    return _Csv(p)


def _whole_row(p: Path, n: int, row: dict, need: set[str]) -> None:
    """A row shorter than the header (csv gives None for the missing columns) names them; a longer
    one (csv keeps the extra fields under the key None) is refused: its columns cannot be trusted."""
    extra = row.get(None)
    if extra:
        fields, header = len(row) - 1 + len(extra), len(row) - 1
        raise ConfigError(f"{p}:{n}: the row has {fields} fields, the header {header}",
                          hint="fix or drop that row (a comma inside a field needs quotes)")
    missing = sorted(k for k in need if row.get(k) is None)
    if missing:
        raise ConfigError(f"{p}:{n}: the row has fewer fields than the header (no {', '.join(missing)})",
                          hint="fix or drop that row")


def _unique(p: Path, n: int, seen: dict[str, int], job_id: str) -> None:
    if job_id in seen:
        raise ConfigError(f"{p}:{n}: job id {job_id!r} already at line {seen[job_id]}",
                          hint="each job once; fix or drop the repeated row")
    seen[job_id] = n


def _integer(p: Path, n: int, name: str, text: str | None) -> int:
    """A whole number of a trace row: ASCII digits with an optional '-' (``int`` alone would take
    ``'٣'``, ``'1_0'`` or ``' 3'``; ``str.isdigit`` takes ``'²'``, which ``int`` refuses)."""
    value = (text or "").strip()
    digits = value[1:] if value.startswith("-") else value
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise ConfigError(f"{p}:{n}: {name}={str(text)[:40]!r} is not a whole number",
                          hint=f"write {name} in the digits 0-9 (e.g. 8), or drop that row")
    return int(value)


def _number(p: Path, n: int, name: str, text: str | None) -> float:
    """A number of a trace row, written in ASCII (``float`` alone would take ``'٣'`` or ``'1_0'``)."""
    value = (text or "").strip()
    try:
        if not value.isascii() or "_" in value:
            raise ValueError
        return float(value)
    except ValueError:
        raise ConfigError(f"{p}:{n}: {name}={str(text)[:40]!r} is not a number",
                          hint=f"write {name} as a decimal number (e.g. 3600 or 3.6e3), or drop that row"
                          ) from None


def _gpus(p: Path, n: int, text: str | None) -> int:
    """A row's GPU count: 0 (a CPU-only job, skipped by the caller) up to MAX_JOB_GPUS."""
    gpus = _integer(p, n, "num_gpu", text or "0")
    if not 0 <= gpus <= MAX_JOB_GPUS:
        raise ConfigError(f"{p}:{n}: num_gpu={gpus} is not in 0..{MAX_JOB_GPUS}", hint="fix or drop that row")
    return gpus


def _shift(jobs: list[Job]) -> list[Job]:
    if not jobs:
        return jobs
    t0 = min(j.submit for j in jobs)
    from dataclasses import replace

    return [replace(j, submit=j.submit - t0) for j in sorted(jobs, key=lambda j: (j.submit, j.id))]


#: Communication-heaviness of the trace's models relative to the default profile (assumptions, not
#: measurements: VGG/AlexNet have large fully-connected layers, ResNet/Inception small gradients).
_SENS = {"vgg": 1.5, "alexnet": 1.5, "inception": 0.8, "resnet": 0.7, "googlenet": 0.7, "bert": 1.2, "gpt": 1.3}


def read_tiresias(path: str | os.PathLike[str], *, gpus_per_host: int = 8, walltime_factor: float = 2.0,
                  time_scale: float = 1.0) -> Trace:
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    jobs, skipped = [], 0
    reader = _csv(p)
    need = {"job_id", "num_gpu", "submit_time", "duration"}
    if not need <= set(reader.fieldnames or ()):
        raise ConfigError(f"{p}: not a Tiresias trace (needs columns {sorted(need)})")
    seen: dict[str, int] = {}
    for n, row in enumerate(reader, start=2):
        _whole_row(p, n, row, need)
        _unique(p, n, seen, row["job_id"])
        gpus = _gpus(p, n, row["num_gpu"])
        submit = _number(p, n, "submit_time", row["submit_time"])
        dur = _number(p, n, "duration", row["duration"])
        _times(p, n, submit_time=submit, duration=dur)
        if gpus < 1:
            skipped += 1
            continue
        model = (row.get("model_name") or "").lower()
        sens = next((v for k, v in _SENS.items() if model.startswith(k)), 1.0)
        jobs.append(Job(id=f"t{row['job_id']}", request=gang_request(gpus, gpus_per_host),
                        submit=submit * time_scale, walltime=max(dur * time_scale * walltime_factor, 60.0),
                        duration=dur * time_scale, account=model.rstrip("0123456789") or "default",
                        meta={**_profile(row, sens, where=f"{p}:{n}"), "model": model}))
    return Trace(_shift(jobs), f"tiresias:{p.name}", skipped)


def _profile(row: dict, scale: float = 1.0, *, where: str = "") -> dict[str, float]:
    """A job's communication profile: the trace's ``comm_fraction`` (0..1) / ``comm_bytes`` (> 0)
    columns when it has them, checked here (not when the job first starts, mid-replay), else the
    default fraction × ``scale`` (sim.contention)."""
    from fabric_hpc.sim.contention import DEFAULT_COMM_FRACTION

    out = {"comm_fraction": round(min(DEFAULT_COMM_FRACTION * scale, 1.0), 4)}
    for key, ok, rule in (("comm_fraction", lambda v: 0.0 <= v <= 1.0, "a number in 0..1"),
                          ("comm_bytes", lambda v: 0.0 < v < 1e18, "a number of bytes > 0")):
        text = row.get(key)
        if text in (None, ""):
            continue
        try:
            value = float(text) if str(text).isascii() and "_" not in str(text) else math.nan
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise ConfigError(f"{where}: {key} {str(text)[:40]!r} is not {rule}", hint="fix the column, or leave it empty "
                              "for the default profile (docs/scheduler.md, communication profile)")
        out[key] = value
    return out


OPENB_TIERS = {"LS": "high", "Guaranteed": "high", "Burstable": "normal", "BE": "spot"}


def read_openb(path: str | os.PathLike[str], *, gpus_per_host: int = 8, walltime_factor: float = 2.0,
               time_scale: float = 1.0, limit: int | None = None) -> Trace:
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    jobs, skipped = [], 0
    reader = _csv(p)
    need = {"name", "num_gpu", "qos", "creation_time", "deletion_time"}
    if not need <= set(reader.fieldnames or ()):
        raise ConfigError(f"{p}: not an Alibaba openb pod list (needs columns {sorted(need)})")
    seen: dict[str, int] = {}
    for n, row in enumerate(reader, start=2):
        _whole_row(p, n, row, need)
        _unique(p, n, seen, row["name"])
        gpus = _gpus(p, n, row["num_gpu"])
        start = _number(p, n, "creation_time", row["creation_time"])
        deleted = row["deletion_time"]
        end = _number(p, n, "deletion_time", deleted) if deleted.strip() else math.nan
        _times(p, n, creation_time=start)
        if math.isfinite(end):
            _times(p, n, deletion_time=end)
        if gpus <= 0 or not math.isfinite(end) or end <= start:
            skipped += 1
            continue
        qos = row["qos"]
        if qos not in OPENB_TIERS:
            raise ConfigError(f"{p}:{n}: unknown qos {qos!r}", hint=f"known: {', '.join(OPENB_TIERS)}")
        dur = (end - start) * time_scale
        jobs.append(Job(id=row["name"], request=gang_request(gpus, gpus_per_host), submit=start * time_scale,
                        walltime=max(dur * walltime_factor, 60.0), duration=dur, tier=OPENB_TIERS[qos],
                        account=qos, meta=_profile(row, where=f"{p}:{n}")))
        if limit and len(jobs) >= limit:
            break
    return Trace(_shift(jobs), f"openb:{p.name}", skipped)


#: (field index, name) of the SWF fields read as whole numbers, and as numbers.
_SWF_INTEGERS = ((0, "job number"), (4, "allocated processors"), (7, "requested processors"), (11, "user"),
                 (12, "group"), (14, "queue"))
_SWF_NUMBERS = ((1, "submit time"), (3, "run time"), (8, "requested time"))


def read_swf(path: str | os.PathLike[str], *, procs_per_gpu: int = 1, gpus_per_host: int = 8,
             queue_tiers: dict[int, str] | None = None, time_scale: float = 1.0) -> Trace:
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    if not isinstance(procs_per_gpu, int) or procs_per_gpu < 1:
        raise ConfigError(f"procs_per_gpu={procs_per_gpu!r} must be a whole number ≥ 1")
    jobs, skipped, seen = [], 0, {}
    for n, line in enumerate(_lines(p), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        f = line.split()
        if len(f) < 18:
            raise ConfigError(f"{p}:{n}: an SWF line has 18 fields, this one {len(f)}")
        num, alloc, req_procs, user, group, queue = (
            _integer(p, n, name, f[i]) for i, name in _SWF_INTEGERS)
        submit, run, req_time = (_number(p, n, name, f[i]) for i, name in _SWF_NUMBERS)
        _unique(p, n, seen, f"swf{num}")
        _times(p, n, submit=submit)
        for name, v in (("run_time", run), ("requested_time", req_time)):  # SWF: -1 means unknown
            if not math.isfinite(v) or v > MAX_TRACE_SECONDS:
                raise ConfigError(f"{p}:{n}: {name}={v!r} is not a finite time",
                                  hint="fix or drop that row; SWF writes -1 for an unknown time")
        procs = alloc if alloc > 0 else req_procs
        if procs > MAX_JOB_GPUS * procs_per_gpu:
            raise ConfigError(f"{p}:{n}: {procs} processors is more than {MAX_JOB_GPUS} GPUs")
        if procs <= 0 or run < 0:
            skipped += 1
            continue
        gpus = max(1, math.ceil(procs / procs_per_gpu))
        wall = req_time if req_time > 0 else run * 2
        jobs.append(Job(id=f"swf{num}", request=gang_request(gpus, gpus_per_host), submit=submit * time_scale,
                        walltime=max(wall, run, 1.0) * time_scale, duration=run * time_scale,
                        account=f"g{group}", user=f"u{user}",
                        tier=(queue_tiers or {}).get(queue, "normal")))
    return Trace(_shift(jobs), f"swf:{p.name}", skipped)
