"""Trace readers: Tiresias CSV and Alibaba openb CSV, and the pieces every reader shares (the Standard
Workload Format reader is in :mod:`fabric_hpc.sim.swf`, the dispatcher in :mod:`fabric_hpc.sim.load`).

Every reader returns ``list[Job]`` with submit times shifted so the first job arrives at 0. Rows
that cannot become a GPU job (no GPUs, not finished, no run time) are skipped and counted per reason
in ``skipped_by`` of the returned :class:`Trace` list; malformed files raise ConfigError with the
line. Files are read one line at a time; ``limit=N`` keeps only the N earliest jobs (sim.rows).

* **Tiresias** (``job_id,num_gpu,submit_time,iterations,model_name,duration,interval``, from the
  Tiresias NSDI'19 simulator): GPUs > ``gpus_per_host`` become ``nodes × gpus_per_host`` gangs;
  ``model_name`` sets the communication sensitivity (VGG/AlexNet high, ResNet/Inception lower, as
  Tiresias' skew analysis found), nothing else; walltime = duration × ``walltime_factor``; optional
  ``account``, ``user`` and ``tier`` (high/normal/spot) columns, else ``default``, ``user``,
  ``normal``.
* **Alibaba openb** (``name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,
  creation_time,deletion_time,scheduled_time``, from the FGD ATC'23 traces): ``creation_time`` →
  submit, ``deletion_time − scheduled_time`` → duration (creation → scheduled was the original
  cluster's queue wait; without a ``scheduled_time``: ``deletion_time − creation_time``; one outside
  creation..deletion is a ConfigError naming the line); ``qos`` LS/Guaranteed → ``high``,
  Burstable → ``normal``, BE → ``spot``; pods without GPUs are skipped; a fractional GPU
  (``gpu_milli < 1000``) counts as a whole GPU (placement allocates whole GPUs).
* **SWF** (Parallel Workloads Archive, 18 whitespace-separated fields, ``;`` comments): field 2
  submit, 4 run time, 5 allocated processors (or 8 requested), 9 requested time, 12 user,
  13 group (→ account), 15 queue (→ tier via ``queue_tiers``, e.g. ``{1: "high", 2: "spot"}``; CLI
  ``--swf-queue-tier 1=high,2=spot``; other queues are ``normal``); ⌈processors / ``procs_per_gpu``⌉ =
  GPUs (CLI ``--procs-per-gpu``; default 1: a CPU cluster's 256-processor job is a 256-GPU gang).

A run time of 0 s (SWF run time 0, Tiresias duration 0) is a job that ran under a second: it is
kept, and waits for its GPUs like any other; an openb pod deleted when it was created (or
scheduled) never ran and is skipped (``NEVER_RAN``), as is one deleted while ``Pending`` with no
``scheduled_time`` (``NEVER_SCHEDULED``: its deletion − creation was a wait) and an SWF run time of
-1 (unknown).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inputs import check_path, finite
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import TIERS, Job
from fabric_hpc.sim.rows import (NEVER_RAN, NEVER_SCHEDULED, NOT_FINISHED, NOT_GPU, Ids, Keep, Span,
                                checked_id, lines, run_time)


#: Largest gang a trace row may ask for.
MAX_JOB_GPUS = 1_000_000
#: Where the sample traces are (data/ is in the source tree only, not in the wheel).
TRACE_SOURCES = ("the sample traces are in data/traces/ of fabric-hpc's source tree (not in the wheel; "
                 "data/README.md there), or at https://github.com/SymbioticLab/Tiresias "
                 "(simulator/60_job.csv) and https://github.com/alibaba/clusterdata "
                 "(cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv)")


class Trace(list):
    """A list of jobs with ``name`` and the rows skipped: ``skipped_by`` (reason → rows, the reasons
    of :mod:`fabric_hpc.sim.rows`) and ``skipped`` (their total); ``path``: the file read (None: a
    generated workload), which :meth:`file_identity` names by content."""

    def __init__(self, jobs: list[Job], name: str, skipped: int | dict[str, int] = 0,
                 path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(jobs)
        self.name = name
        self.path = None if path is None else Path(path).resolve()
        self._identity: dict[str, str] | None = None
        if not isinstance(skipped, dict):
            skipped = {NOT_GPU: skipped} if skipped else {}
        self.skipped_by = dict(skipped)
        self.skipped = sum(self.skipped_by.values())

    def file_identity(self) -> dict[str, str] | None:
        """``{"path": resolved path, "sha256": hex digest of the file}`` (the file read again in 1 MiB
        blocks, once), so two files of one name (two clusters' ``jobs.csv``) are told apart; None for
        a generated workload."""
        if self.path is None:
            return None
        if self._identity is None:
            from fabric_hpc.inputs import os_error

            digest = hashlib.sha256()
            try:
                with open(self.path, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
            except OSError as exc:
                raise os_error(exc, "trace file", self.path) from None
            self._identity = {"path": str(self.path), "sha256": digest.hexdigest()}
        return self._identity

    def notes(self) -> list[str]:
        """One line per reason rows were skipped, e.g. ``3 row(s) of sacct:x.txt are jobs that had not
        finished (...) and were skipped``."""
        return [f"{k} row(s) of {self.name} {reason} and were skipped"
                for reason, k in self.skipped_by.items()]


@functools.lru_cache(maxsize=4096)
def gang_request(gpus: int, gpus_per_host: int = 8) -> Request:
    """One host for ≤ ``gpus_per_host`` GPUs, else full hosts (``nodes × gpus_per_host``); cached:
    a Request is frozen, so the jobs of one size share it."""
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
        raise NotFoundError(f"no trace file {p}", hint="give the path of a trace file, or synthetic:jobs=N "
                                                       f"for a generated workload; {TRACE_SOURCES}")
    return check_path(p, what="trace file")


def _scale(time_scale: float) -> float:
    return finite(time_scale, "time_scale", lo=0, hi=1e6, lo_open=True)


def _host_size(gpus_per_host: int) -> int:
    if not isinstance(gpus_per_host, int) or not 1 <= gpus_per_host <= 1024:
        raise ConfigError(f"gpus_per_host={gpus_per_host!r} must be a whole number in 1..1024",
                          hint="give the GPUs per host of the fabric (--gpus-per-host)")
    return gpus_per_host


def separator_error(p: Path, first: str) -> ConfigError | None:
    """The error for a CSV header line separated by ';' or tabs, not commas (Excel's "CSV" in many
    locales writes ';'); None when that is not the problem."""
    if "," in first:
        return None
    name = next((n for sep, n in ((";", "';'"), ("\t", "tab")) if len(first.split(sep)) > 1), None)
    if name is None:
        return None
    return ConfigError(f"{p}: its columns are separated by {name}, not commas ({first[:60]!r})",
                       hint="save it with commas between the columns (Excel: \"CSV UTF-8 (Comma "
                            "delimited)\"), header job_id,num_gpu,submit_time,duration (docs/scheduler.md)")


class _Table:
    """The rows of a CSV trace as lists, checked against its header (one line at a time: a row
    shorter than the header that lacks a needed column, or longer than it, is an error naming it)."""

    def __init__(self, p: Path, need: set[str], what: str) -> None:
        self.p, self.reader = p, csv.reader(lines(p), skipinitialspace=True)  # 'a, b' and 'a, "b"' too
        try:
            header = next((r for r in self.reader if r), None)
        except csv.Error as exc:
            raise self._error(exc) from None
        if not header:
            raise ConfigError(f"{p}: the trace file is empty or does not start with its header line",
                              hint="give a trace with a header and jobs (docs/scheduler.md)")
        self.width, self.col = len(header), {}
        for i, name in enumerate(header):
            self.col.setdefault(name.strip(), i)
        missing = sorted(need - set(self.col))
        if missing and len(header) == 1 and (wrong := separator_error(p, header[0])):
            raise wrong
        if missing:
            raise ConfigError(f"{p}: not {what} (no column {', '.join(missing)}; it needs "
                              f"{', '.join(sorted(need))})",
                              hint=f"the first line must be the header naming the columns; {what} is "
                                   "described in docs/scheduler.md (Workloads); any other trace loads once "
                                   "converted to the minimal Tiresias CSV job_id,num_gpu,submit_time,"
                                   "duration (seconds; docs/scheduler.md, Bringing your own trace)")
        self.need = max(self.col[k] for k in need)
        #: The trace has a communication profile column (comm_fraction / comm_bytes).
        self.profiled = "comm_fraction" in self.col or "comm_bytes" in self.col

    def _error(self, exc: csv.Error) -> ConfigError:
        return ConfigError(f"{self.p}:{self.reader.line_num}: not valid CSV ({exc})",
                           hint="fix that line (a field over 131,072 characters, or a stray quote)")

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        rows = iter(self.reader)
        while True:
            try:
                row = next(rows, None)
            except csv.Error as exc:
                raise self._error(exc) from None
            if row is None:
                return
            if not row:
                continue
            n = self.reader.line_num
            if len(row) > self.width:
                raise ConfigError(f"{self.p}:{n}: the row has {len(row)} fields, the header {self.width}",
                                  hint="fix or drop that row (a comma inside a field needs quotes)")
            if len(row) <= self.need:
                names = sorted(k for k, i in self.col.items() if i >= len(row))
                raise ConfigError(f"{self.p}:{n}: the row has fewer fields than the header "
                                  f"(no {', '.join(names)})", hint="fix or drop that row")
            yield n, row

    def get(self, row: list[str], name: str) -> str | None:
        i = self.col.get(name)
        return row[i] if i is not None and i < len(row) else None


def _integer(p: Path, n: int, name: str, text: str | None) -> int:
    """A whole number of a trace row: ASCII digits with an optional '-' (``int`` alone would take
    ``'٣'``, ``'1_0'`` or ``' 3'``; ``str.isdigit`` takes ``'²'``, which ``int`` refuses)."""
    value = (text or "").strip()
    digits = value[1:] if value.startswith("-") else value
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f"{p}:{n}: {name}={str(text)[:40]!r} is not a whole number",
                          hint=f"write {name} in the digits 0-9 (e.g. 8), or drop that row")
    if len(digits) > 18:
        raise ConfigError(f"{p}:{n}: {name}={value[:40]!r} has more than 18 digits",
                          hint="fix or drop that row (a whole number of a trace has at most 18 digits)")
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


def _built(keep: Keep) -> list[Job]:
    """The Jobs of the rows ``keep`` holds (payload: request, walltime, duration, account, user, tier,
    meta), sorted by (submit, id) with submit times shifted so the first is 0; each Job is built
    once, and each row's tuple let go as its Job is made."""
    rows = keep.rows()
    t0 = rows[0][0] if rows else 0.0
    jobs = []
    for i, (submit, job_id, (request, walltime, duration, account, user, tier, meta)) in enumerate(rows):
        rows[i] = None
        jobs.append(Job(id=job_id, request=request, submit=submit - t0, walltime=walltime, duration=duration,
                        account=account, user=user, tier=tier, meta=meta))
    return jobs


#: Communication-heaviness of the trace's models relative to the default profile (assumptions, not
#: measurements: VGG/AlexNet have large fully-connected layers, ResNet/Inception small gradients).
_SENS = {"vgg": 1.5, "alexnet": 1.5, "inception": 0.8, "resnet": 0.7, "googlenet": 0.7, "bert": 1.2, "gpt": 1.3}


def read_tiresias(path: str | os.PathLike[str], *, gpus_per_host: int = 8, walltime_factor: float = 2.0,
                  time_scale: float = 1.0, limit: int | None = None) -> Trace:
    """The jobs of a Tiresias CSV; ``limit``: only the N earliest (every row is still checked)."""
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    need = {"job_id", "num_gpu", "submit_time", "duration"}
    table, keep, ids = _Table(p, need, "a Tiresias trace"), Keep(limit), Ids(p)
    span = Span(p, time_scale, "submit_time")
    i_id, i_gpu, i_sub, i_dur = (table.col[k] for k in ("job_id", "num_gpu", "submit_time", "duration"))
    for n, row in table:
        ids.add(row[i_id])
        gpus = _gpus(p, n, row[i_gpu])
        submit = span.add(n, _number(p, n, "submit_time", row[i_sub]))  # scaled
        dur = run_time(p, n, "duration", _number(p, n, "duration", row[i_dur]), time_scale)
        profile = _profile(table, row, p, n) if table.profiled else {}
        if gpus < 1:
            keep.skip(NOT_GPU)
            continue
        jid = checked_id(p, n, f"t{row[i_id]}")
        if not keep.wants(submit, jid):
            continue
        model = (table.get(row, "model_name") or "").lower()
        sens = next((v for k, v in _SENS.items() if model.startswith(k)), 1.0)
        account, user, tier = _who(table, row, p, n)
        keep.add(submit, jid, (
            gang_request(gpus, gpus_per_host), max(dur * walltime_factor, 60.0), dur, account, user, tier,
            {"comm_fraction": _fraction(sens), **profile, "model": sys.intern(model)}))
    span.check()
    ids.check(lambda: ((n, row[i_id]) for n, row in _Table(p, need, "a Tiresias trace")))
    return Trace(_built(keep), f"tiresias:{p.name}", keep.skipped_by, path=p)


def _who(table: _Table, row: list[str], p: Path, n: int) -> tuple[str, str, str]:
    """(account, user, tier) of a Tiresias row: its ``account``, ``user`` and ``tier`` columns where the
    trace has them and the cell is not empty, else ``default``, ``user``, ``normal`` (the model name
    is no account: it only sets the communication sensitivity)."""
    account, user, tier = ((table.get(row, k) or "").strip() for k in ("account", "user", "tier"))
    tier = tier.lower() or "normal"
    if tier not in TIERS:
        raise ConfigError(f"{p}:{n}: tier {tier[:40]!r} is not one of {', '.join(TIERS)}",
                          hint=f"write {', '.join(TIERS)} in the tier column, or leave it empty for normal")
    return sys.intern(account or "default"), sys.intern(user or "user"), tier


@functools.lru_cache(maxsize=64)
def _fraction(scale: float) -> float:
    """The default communication fraction (sim.contention) × a model's ``scale``."""
    from fabric_hpc.sim.contention import DEFAULT_COMM_FRACTION

    return round(min(DEFAULT_COMM_FRACTION * scale, 1.0), 4)


def _profile(table: _Table, row: list[str], p: Path, n: int) -> dict[str, float]:
    """The trace's ``comm_fraction`` (0..1) / ``comm_bytes`` (> 0) columns of a row when it has them,
    checked here (not when the job first starts, mid-replay); the caller adds the default fraction
    (sim.contention) where the row gives none."""
    out: dict[str, float] = {}
    for key, ok, rule in (("comm_fraction", lambda v: 0.0 <= v <= 1.0, "a number in 0..1"),
                          ("comm_bytes", lambda v: 0.0 < v < 1e18, "a number of bytes > 0")):
        text = table.get(row, key)
        if text in (None, ""):
            continue
        try:
            value = float(text) if str(text).isascii() and "_" not in str(text) else math.nan
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise ConfigError(f"{p}:{n}: {key} {str(text)[:40]!r} is not {rule}",
                              hint="fix the column, or leave it empty for the default profile "
                                   "(docs/scheduler.md, communication profile)")
        out[key] = value
    return out


OPENB_TIERS = {"LS": "high", "Guaranteed": "high", "Burstable": "normal", "BE": "spot"}


def read_openb(path: str | os.PathLike[str], *, gpus_per_host: int = 8, walltime_factor: float = 2.0,
               time_scale: float = 1.0, limit: int | None = None) -> Trace:
    """The GPU pods of an openb pod list; ``limit``: only the N earliest (every row is still checked)."""
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    need = {"name", "num_gpu", "qos", "creation_time", "deletion_time"}
    table, keep, ids = _Table(p, need, "an Alibaba openb pod list"), Keep(limit), Ids(p)
    span = Span(p, time_scale, "creation_time")
    i_name, i_gpu, i_qos, i_new, i_del = (table.col[k] for k in ("name", "num_gpu", "qos", "creation_time",
                                                                "deletion_time"))
    for n, row in table:
        ids.add(row[i_name])
        gpus = _gpus(p, n, row[i_gpu])
        _milli(p, n, table.get(row, "gpu_milli"))
        raw = _number(p, n, "creation_time", row[i_new])
        start = span.add(n, raw)  # scaled
        end = _number(p, n, "deletion_time", row[i_del]) if row[i_del].strip() else None
        ran = True
        if end is not None:
            if math.isfinite(end) and end < raw:
                raise ConfigError(f"{p}:{n}: deletion_time={end:g} is before creation_time={raw:g}",
                                  hint="fix the row (a pod is deleted after it is created), or drop it")
            began = _scheduled(table, row, p, n, raw, end)
            name = "deletion_time - creation_time" if began is None else "deletion_time - scheduled_time"
            run = run_time(p, n, name, end - (raw if began is None else began), time_scale)
            end, ran = start + run, end > (raw if began is None else began)
        profile = _profile(table, row, p, n) if table.profiled else {}
        if gpus <= 0 or end is None or not ran:
            keep.skip(NOT_GPU if gpus <= 0 else NOT_FINISHED if end is None else NEVER_RAN)
            continue
        if _never_scheduled(table, row):
            keep.skip(NEVER_SCHEDULED)
            continue
        qos = row[i_qos]
        if qos not in OPENB_TIERS:
            raise ConfigError(f"{p}:{n}: unknown qos {qos[:40]!r}",
                              hint=f"write one of {', '.join(OPENB_TIERS)} (LS/Guaranteed → high, "
                                   "Burstable → normal, BE → spot), or drop that row")
        name = checked_id(p, n, row[i_name])
        if not keep.wants(start, name):
            continue
        dur = end - start
        keep.add(start, name, (
            gang_request(gpus, gpus_per_host), max(dur * walltime_factor, 60.0), dur, sys.intern(qos), "user",
            OPENB_TIERS[qos], {"comm_fraction": _fraction(1.0), **profile}))
    span.check()
    ids.check(lambda: ((n, row[i_name]) for n, row in _Table(p, need, "an Alibaba openb pod list")))
    return Trace(_built(keep), f"openb:{p.name}", keep.skipped_by, path=p)


def _scheduled(table: _Table, row: list[str], p: Path, n: int, created: float,
               deleted: float) -> float | None:
    """An openb pod's ``scheduled_time`` (unscaled), when the row gives one: the pod ran from then to
    its deletion (creation → scheduled was the original cluster's queue wait); it must lie in
    ``creation_time..deletion_time``. None: no such column or an empty cell (run from creation)."""
    text = table.get(row, "scheduled_time")
    if text is None or not text.strip():
        return None
    at = _number(p, n, "scheduled_time", text)
    if not math.isfinite(at) or not created <= at <= deleted:
        where = ("before creation_time" if at < created else "after deletion_time" if at > deleted
                 else "not finite")
        raise ConfigError(f"{p}:{n}: scheduled_time={at:g} is {where} (creation_time={created:g}, "
                          f"deletion_time={deleted:g})",
                          hint="fix the row (a pod is scheduled after it is created and before it is "
                               "deleted), leave scheduled_time empty to run it from creation, or drop it")
    return at


def _never_scheduled(table: _Table, row: list[str]) -> bool:
    """An openb pod deleted while still ``Pending`` (no ``scheduled_time``): it never ran (a file
    without those columns: every finished pod ran)."""
    phase, scheduled = table.get(row, "pod_phase"), table.get(row, "scheduled_time")
    return (phase or "").strip().lower() == "pending" and not (scheduled or "").strip()


def _milli(p: Path, n: int, text: str | None) -> None:
    """openb's ``gpu_milli``: the share of each GPU a pod asks, 0..1000 (1000: a whole GPU)."""
    if text is None or not text.strip():
        return
    milli = _number(p, n, "gpu_milli", text)
    if not 0 <= milli <= 1000:
        raise ConfigError(f"{p}:{n}: gpu_milli={milli:g} is not in 0..1000",
                          hint="gpu_milli is the share of each GPU in thousandths (1000: a whole GPU; "
                               "num_gpu says how many); fix or drop that row")
