"""The Standard Workload Format (Parallel Workloads Archive) trace reader: :func:`read_swf`, its
processors-per-GPU and queue → tier options, and :func:`parse_queue_tiers` for the CLI's
``--swf-queue-tier``. The field mapping is described in :mod:`fabric_hpc.sim.traces`."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler.contract import TIERS
from fabric_hpc.sim.rows import MAX_TRACE_SECONDS, NO_RUN_TIME, NOT_GPU, Ids, Keep, Span, lines
from fabric_hpc.sim.traces import (MAX_JOB_GPUS, Trace, _built, _host_size, _integer, _number, _open, _scale,
                                   gang_request)


#: (field index, name) of the SWF fields read as whole numbers, and as numbers.
_SWF_INTEGERS = ((0, "job number"), (4, "allocated processors"), (7, "requested processors"), (11, "user"),
                 (12, "group"), (14, "queue"))
_SWF_NUMBERS = ((1, "submit time"), (3, "run time"), (8, "requested time"))


def read_swf(path: str | os.PathLike[str], *, procs_per_gpu: int = 1, gpus_per_host: int = 8,
             queue_tiers: dict[int, str] | None = None, time_scale: float = 1.0,
             limit: int | None = None) -> Trace:
    """The jobs of an SWF file; ``limit``: only the N earliest (every line is still checked)."""
    p = _open(path)
    time_scale, gpus_per_host = _scale(time_scale), _host_size(gpus_per_host)
    procs_per_gpu, tiers = _procs_per_gpu(procs_per_gpu), _queue_tiers(queue_tiers)
    keep, ids, span = Keep(limit), Ids(p), Span(p, time_scale, "submit_time", negative=False)
    partial = False  # a line of status 2, 3 or 4: a partial execution (one job number on several lines)
    for n, f in _swf_lines(p):
        partial = partial or f[10] in _PARTIAL
        num, alloc, req_procs, user, group, queue = (
            _integer(p, n, name, f[i]) for i, name in _SWF_INTEGERS)
        submit, run, req_time = (_number(p, n, name, f[i]) for i, name in _SWF_NUMBERS)
        ids.add(f"swf{num}")
        submit = span.add(n, submit)  # scaled
        for name, v in (("run_time", run), ("requested_time", req_time)):  # SWF: -1 means unknown
            if not math.isfinite(v) or v * time_scale > MAX_TRACE_SECONDS:
                raise ConfigError(f"{p}:{n}: {name}={v!r} is not a finite time of at most "
                                  f"{MAX_TRACE_SECONDS:.0e} s (after --time-scale {time_scale:g})",
                                  hint="fix or drop that row (SWF writes -1 for an unknown time), or give "
                                       "--time-scale for a trace not in seconds")
        procs = alloc if alloc > 0 else req_procs
        if procs > MAX_JOB_GPUS * procs_per_gpu:
            raise ConfigError(f"{p}:{n}: {procs} processors is more than {MAX_JOB_GPUS:,} GPUs "
                              f"(at {procs_per_gpu} processor(s) per GPU)",
                              hint="fix or drop that line, or give the processors per GPU (fabric sim run "
                                   "--procs-per-gpu N; read_swf(procs_per_gpu=N))")
        if procs <= 0 or run < 0:
            keep.skip(NOT_GPU if procs <= 0 else NO_RUN_TIME)
            continue
        if not keep.wants(submit, f"swf{num}"):
            continue
        gpus = max(1, math.ceil(procs / procs_per_gpu))
        wall = req_time if req_time > 0 else run * 2
        keep.add(submit, f"swf{num}", (
            gang_request(gpus, gpus_per_host), max(wall, run, 1.0) * time_scale, run * time_scale,
            sys.intern(f"g{group}"), sys.intern(f"u{user}"), tiers.get(queue, "normal"), {}))
    span.check()
    ids.check(lambda: ((n, f"swf{_integer(p, n, 'job number', f[0])}") for n, f in _swf_lines(p)),
              **({"hint": _PARTIAL_HINT} if partial else {}))
    return Trace(_built(keep), f"swf:{p.name}", keep.skipped_by, path=p)


#: SWF status (field 11) of a partial execution of a checkpointed or swapped job: 2 (continued), 3 / 4
#: (the last one, completed / failed); the job's number is on each of its lines.
_PARTIAL = ("2", "3", "4")
_PARTIAL_HINT = ("this log has SWF partial executions (status 2, 3 or 4, field 11: a checkpointed or swapped "
                 "job's runs, each on a line of its own with the job's number), which this reader does not "
                 "merge: keep one line per job (where the log has it, the whole job's line, status 0, 1 or "
                 "5), e.g. awk '/^;/ || ($11 != 2 && $11 != 3 && $11 != 4)' FILE > FILE-jobs.swf")


#: Most processors per GPU (``procs_per_gpu``): a host of 1,024 GPUs with a million cores each.
MAX_PROCS_PER_GPU = 1 << 30


def _procs_per_gpu(procs_per_gpu: int) -> int:
    if isinstance(procs_per_gpu, bool) or not isinstance(procs_per_gpu, int) or not (
            1 <= procs_per_gpu <= MAX_PROCS_PER_GPU):
        raise ConfigError(f"procs_per_gpu={procs_per_gpu!r} must be a whole number in "
                          f"1..{MAX_PROCS_PER_GPU:,}",
                          hint="give the CPU processors of the SWF cluster that stand for one GPU "
                               "(fabric sim run --procs-per-gpu N, e.g. 32 for a 32-core host per GPU)")
    return procs_per_gpu


def _queue_tiers(queue_tiers: dict[int, str] | None) -> dict[int, str]:
    """The SWF queue number → tier map, checked: whole-number queues, tiers of TIERS."""
    out: dict[int, str] = {}
    for queue, tier in (queue_tiers or {}).items():
        if isinstance(queue, bool) or not isinstance(queue, int) or tier not in TIERS:
            raise ConfigError(f"queue_tiers maps {queue!r} to {tier!r}: not a queue number and a tier",
                              hint=f"map SWF queue numbers to tiers {', '.join(TIERS)}, e.g. "
                                   "--swf-queue-tier 1=high,2=spot (queues not named are normal)")
        out[queue] = tier
    return out


def parse_queue_tiers(text: str) -> dict[int, str]:
    """``"1=high,2=spot"`` → ``{1: "high", 2: "spot"}`` (the CLI's ``--swf-queue-tier``)."""
    out: dict[int, str] = {}
    for part in (x.strip() for x in text.split(",")):
        queue, sep, tier = (x.strip() for x in part.partition("="))
        digits = queue[1:] if queue.startswith("-") else queue
        if not sep or not (digits.isascii() and digits.isdigit()) or len(digits) > 9 or tier not in TIERS:
            raise ConfigError(f"--swf-queue-tier: {part[:40]!r} is not QUEUE=TIER",
                              hint=f"give SWF queue numbers (field 15) and tiers {', '.join(TIERS)}, "
                                   "e.g. --swf-queue-tier 1=high,2=spot (queues not named are normal)")
        if int(queue) in out:
            raise ConfigError(f"--swf-queue-tier: queue {int(queue)} is given more than once",
                              hint="give each queue once")
        out[int(queue)] = tier
    return out


def _swf_lines(p: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each job line of an SWF file: exactly 18 fields (comments skipped)."""
    for n, line in enumerate(lines(p), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        f = line.split()
        if len(f) != 18:
            raise ConfigError(f"{p}:{n}: an SWF line has 18 fields, this one {len(f)}",
                              hint="fix or drop that line (SWF: 18 whitespace-separated numbers, -1 for "
                                   "unknown; comments start with ';')")
        yield n, f
