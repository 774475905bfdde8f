"""Plumbing shared by the trace readers: a file read one line at a time, the N earliest jobs kept,
job ids checked for repeats in 8 bytes a row, and the reasons rows were skipped.

Memory: a reader holds one line at a time, the jobs it keeps, and 8 bytes per row for the
repeated-id check, so ``limit=N`` costs O(N) jobs whatever the file's size (at most
:data:`~fabric_hpc.inputs.MAX_FILE_BYTES`). The whole file is still read and every row checked:
the N jobs kept are the N earliest by submit time of the whole trace (a file need not be sorted),
and a bad row after them is still an error.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from operator import itemgetter
from typing import IO, Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.inputs import MAX_FILE_BYTES, check_regular, compression_of, decompress_command, os_error
from fabric_hpc.scheduler.idorder import id_key, sort_by_time_then_id

#: Reasons a row is skipped (``Trace.skipped_by`` keys); each is said in its own note.
NOT_GPU = "are not GPU jobs (no GPUs asked)"
NOT_FINISHED = ("are jobs that had not finished (no end time: pending, running, or requeued when the "
                "log ended)")
#: A run time of 0 s (SWF, Tiresias, sacct/jobcomp End = Start) is a job that ran under a second: it is
#: kept (it still waits for its GPUs), so these reasons are for rows that say the job never ran.
NO_RUN_TIME = "have no run time (SWF run time -1: unknown)"
NEVER_RAN = "never ran (openb pods deleted when they were created or scheduled)"
#: openb pods that were deleted while Pending: their deletion - creation is a wait, not a run.
NEVER_SCHEDULED = ("were never scheduled (openb pod_phase Pending and no scheduled_time: deleted while "
                   "waiting, so deletion - creation is a wait, not a run time)")
#: sacct rows whose AllocTRES lists TRES but no gres/gpu.
NO_GPU_TRES = ("are not GPU jobs (their AllocTRES lists no gres/gpu; a site that does not account GPUs "
               "(AccountingStorageTRES=gres/gpu) can leave AllocTRES out of sacct --format to count "
               "NNodes × --gpus-per-node)")
NO_SUBMIT = "have no submit time (Unknown)"

#: Longest span of submit times (once scaled and shifted to start at 0) and longest run time a trace
#: may give: about 317 years, in seconds.
MAX_TRACE_SECONDS = 1e10
_SCALE_HINT = ("times are seconds: a trace in other units needs --time-scale (0.001 for milliseconds, "
               "1e-6 for microseconds; read_*(time_scale=...)); else fix or drop that row")


class Span:
    """The submit times of a trace, each finite, scaled by ``scale`` as they are read; from any
    origin (``negative``: below 0 too), since the first job is shifted to 0: :meth:`check` refuses,
    at the end, only a span longer than MAX_TRACE_SECONDS once scaled, naming its first and last row."""

    def __init__(self, p: Path, scale: float, name: str, *, negative: bool = True) -> None:
        self.p, self.scale, self.name, self.negative = p, scale, name, negative
        self.lo, self.hi, self.lo_n, self.hi_n = math.inf, -math.inf, 0, 0

    def add(self, n: int, value: float) -> float:
        """``value`` × scale, after checking it is a finite time (and not negative unless allowed)."""
        if not math.isfinite(value) or (value < 0 and not self.negative):
            rule = "a finite time" if self.negative else "a finite time >= 0"
            raise ConfigError(f"{self.p}:{n}: {self.name}={value!r} is not {rule}",
                              hint="fix or drop that row" + ("" if self.negative else
                                                            " (SWF writes -1 for an unknown time)"))
        t = value * self.scale
        if t < self.lo:
            self.lo, self.lo_n = t, n
        if t > self.hi:
            self.hi, self.hi_n = t, n
        return t

    def check(self) -> None:
        if self.hi - self.lo > MAX_TRACE_SECONDS:
            scaled = f" after --time-scale {self.scale:g}" if self.scale != 1 else ""
            raise ConfigError(f"{self.p}: {self.name} spans {self.hi - self.lo:.3g} s{scaled} (line "
                              f"{self.lo_n} to line {self.hi_n}), more than {MAX_TRACE_SECONDS:.0e} s",
                              hint=_SCALE_HINT)


def run_time(p: Path, n: int, name: str, value: float, scale: float) -> float:
    """A duration of a trace row × ``scale``: a finite number of seconds in 0..MAX_TRACE_SECONDS once
    scaled (a ConfigError naming the row, and --time-scale where the size is the problem)."""
    t = value * scale
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{p}:{n}: {name}={value!r} is not a finite time >= 0",
                          hint="fix or drop that row; times are finite seconds")
    if not t <= MAX_TRACE_SECONDS:
        scaled = f" ({t:.3g} s after --time-scale {scale:g})" if scale != 1 else ""
        raise ConfigError(f"{p}:{n}: {name}={value:g}{scaled} is longer than {MAX_TRACE_SECONDS:.0e} s",
                          hint=_SCALE_HINT)
    return t


def lines(p: Path, what: str = "trace file") -> Iterator[str]:
    """The lines of ``p`` one at a time, without their line end (``\\n``, ``\\r\\n``, or a lone
    ``\\r``: an old Mac's, which Excel for Mac still writes as "CSV (Macintosh)"); a UTF-8 byte order
    mark (Excel's "CSV UTF-8") on the first line is dropped. A gzip'd file (the Parallel Workloads
    Archive's ``.swf.gz``) is read through gzip, by its first bytes; another compression is refused with
    the command that undoes it. The file must be a regular file of at most MAX_FILE_BYTES, and its text
    (decompressed) at most MAX_FILE_BYTES too; a line that is not UTF-8 is a ConfigError naming it. (A
    file of lone ``\\r`` ends is read whole, once, before it is split: at most MAX_FILE_BYTES.)"""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc, what, p) from None
    with os.fdopen(fd, "rb", buffering=1 << 20) as f:
        check_regular(fd, what, p)
        try:
            yield from _split(p, _unpacked(p, f, what), what)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # BadGzipFile (a CRC, a method) is an OSError
            raise ConfigError(f"{what} {str(p)!r} is a truncated or corrupt gzip file ({exc})",
                              hint=f"download it again, or check it with gzip -t {p}") from None
        except OSError as exc:
            raise os_error(exc, what, p) from None


def _unpacked(p: Path, f: io.BufferedReader, what: str) -> IO[bytes]:
    """``f``, or a gzip reader of it when it starts like gzip; another compression is a ConfigError."""
    found = compression_of(f.peek(8)[:8])
    if found is None:
        return f
    name, cmd = found
    if name != "gzip":
        raise ConfigError(f"{what} {str(p)!r} is {name}-compressed: trace files are read as text or gzip",
                          hint=f"decompress it (or gzip it), then rerun: {decompress_command(p, cmd)}")
    return gzip.GzipFile(fileobj=f, mode="rb")


def _split(p: Path, f: IO[bytes], what: str) -> Iterator[str]:
    """The decoded lines of ``f``, at most MAX_FILE_BYTES of them in all (one line read at a time, each
    at most what is left of the limit: a gzip stream of one endless line stops there too)."""
    total = n = 0
    while raw := f.readline(MAX_FILE_BYTES - total + 1):
        total += len(raw)
        if total > MAX_FILE_BYTES:
            text = " (decompressed)" if isinstance(f, gzip.GzipFile) else ""
            raise ConfigError(f"{what} {str(p)!r}{text} has more than the limit of {MAX_FILE_BYTES:,} bytes",
                              hint="split it, or check that it is the right file")
        offset = total - len(raw)
        body = raw[:-1] if raw.endswith(b"\n") else raw
        body = body[:-1] if body.endswith(b"\r") else body
        for part in body.split(b"\r") if b"\r" in body else (body,):  # lone CRs end lines too
            n += 1
            yield _decode(p, n, part, offset)
            offset += len(part) + 1


def _decode(p: Path, n: int, raw: bytes, offset: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}:{n}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{offset + exc.start})", hint="save the file as UTF-8") from None
    return text[1:] if n == 1 and text.startswith("\ufeff") else text


def checked_id(p: Path, n: int, job_id: str) -> str:
    """``job_id`` of line ``n``, refused when longer than a report shows (its results and pictures name
    every job: :data:`~fabric_hpc.topology.report.MAX_JOB_ID`), before the simulation runs."""
    from fabric_hpc.topology.report import MAX_JOB_ID

    if len(job_id) > MAX_JOB_ID:
        raise ConfigError(f"{p}:{n}: job id {job_id[:40]!r}… is {len(job_id):,} characters long with the "
                          f"reader's prefix (at most {MAX_JOB_ID})",
                          hint="use shorter job ids; fix or drop that row")
    return job_id


class Ids:
    """Job ids seen so far, 8 bytes each (their hashes); :meth:`check` finds a repeated id at the end
    and, only then, reads the ids again (``again``: (line, id) pairs) to name both lines."""

    def __init__(self, p: Path) -> None:
        self.p, self.hashes = p, array("q")

    def add(self, job_id: str) -> None:
        self.hashes.append(hash(job_id))

    def check(self, again: Callable[[], Iterator[tuple[int, str]]], *,
              hint: str = "each job once; fix or drop the repeated row") -> None:
        import numpy as np

        h = np.sort(np.frombuffer(self.hashes, dtype=np.int64))
        twice = set(h[1:][h[1:] == h[:-1]].tolist())
        if not twice:
            return
        first: dict[str, int] = {}
        for n, job_id in again():
            if hash(job_id) not in twice:
                continue
            if job_id in first:
                raise ConfigError(f"{self.p}:{n}: job id {job_id[:40]!r} already at line {first[job_id]}",
                                  hint=hint)
            first[job_id] = n

_SUBMIT, _ID = itemgetter(0), itemgetter(1)


class Keep:
    """The jobs a reader keeps: all of them, or with ``limit`` only the ``limit`` earliest by
    (submit, id in natural order: :mod:`fabric_hpc.scheduler.idorder`), the order a trace's jobs
    are sorted in, in O(limit) memory.
    :meth:`wants` says whether a row could be kept (so its Job is built only then)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"limit={limit!r} must be a whole number >= 1", hint="e.g. --limit 1000")
        self.limit, self.items, self.worst = limit, [], None  # type: ignore[var-annotated]
        self.skipped_by: dict[str, int] = {}

    def skip(self, reason: str) -> None:
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1

    def wants(self, submit: float, job_id: str) -> bool:
        w = self.worst
        return w is None or submit < w[0] or (submit == w[0] and id_key(job_id) < id_key(w[1]))

    def add(self, submit: float, job_id: str, job: Any) -> None:
        self.items.append((submit, job_id, job))
        if self.limit is not None and len(self.items) >= 2 * self.limit + 1024:
            self._prune()

    def _prune(self) -> None:
        sort_by_time_then_id(self.items, _SUBMIT, _ID)
        del self.items[self.limit:]
        if len(self.items) >= (self.limit or 0):
            self.worst = self.items[-1][:2]

    def rows(self) -> list[Any]:
        """The (submit, id, payload) rows kept, sorted by (submit, id); the Keep lets go of them."""
        if self.limit is not None:
            self._prune()
        rows, self.items = self.items, []
        if self.limit is None:
            sort_by_time_then_id(rows, _SUBMIT, _ID)  # (_prune sorted them)
        return rows
