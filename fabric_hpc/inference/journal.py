"""Exactly-once results: atomically finalised chunk files plus a per-rank fsync'd journal.

Output directory layout::

    DIR/run.json                        job identity: input, engine config, limits, weights (rank 0)
    DIR/spool-snapshot.json             the spool files (name, size, inode) of the last attempt
    DIR/attempts/NNNNNN                 one marker per run attempt
    DIR/chunks/aNNNNNN-rRRRRR-cCCCCCC.jsonl   results, one {"id","tokens","finish_reason","metrics"} a line
                                        (and the item's priority/class where given; metrics:
                                        timings and token counts, which differ on a rerun;
                                        only ids and digests are compared)
    DIR/journal/rank-RRRRR.jsonl        {"chunk", "n", "ids": [...], "digests": [...]} per committed chunk
                                        (digests: each item's content digest, checked on resume)
    DIR/dead-letter.jsonl               rejected input lines with the reason
    DIR/metrics/rank-RRRRR.{jsonl,prom} telemetry
    DIR/results.jsonl                   written by merge, in input order (removed when a new attempt starts)

Commit protocol for a chunk: results stream into ``name.tmp`` (created new, never through a link)
as they arrive (memory stays O(1) per chunk); at commit: fsync, give it the name ``name`` (never
over an existing file), fsync the directory, *then* append the journal record and fsync it; only
after that are the ids acknowledged (the token budget released, progress counted). A crash before
the journal record leaves an orphan chunk, which :func:`~fabric_hpc.inference.resume.prepare_resume`
deletes, so those ids are recomputed; a crash after it leaves them done. Either way each id ends up
in exactly one journalled chunk. Results are deterministic per request (engine contract), so
recomputation yields identical output. Should an id still reach two journalled chunks (an output
directory written by two runs at once, say), :func:`~fabric_hpc.inference.resume.dedupe_chunks` --
run by every resume -- keeps its first copy (journal files in rank order, records in order) and
rewrites the later chunks without it.

Permissions: :func:`private_files` (used by the runner and merge) sets the umask to 077 while
the harness writes, so every file it creates is 0600 and every directory 0700 whatever the
job's umask was (``--output-mode umask`` keeps the job's umask instead).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from fabric_hpc.atomic import atomic_output, fsync_dir
from fabric_hpc.errors import ConfigError, ExternalError, NotFoundError
from fabric_hpc.events import JsonLinesWriter, emit, iter_json_lines, naming_file, open_regular
from fabric_hpc.inference.engine import EngineResult

__all__ = ["MERGE_ORDERS", "OUTPUT_MODES", "ChunkSink", "CommittedIds", "MergeError", "RequestTimes",
           "committed_ids", "journal_records", "merge_outputs", "next_attempt", "private_files",
           "remove_stale_results"]

OUTPUT_MODES = ("private", "umask")
# the names of the files a run writes under chunks/ (``dedupe_chunks`` adds ``-dN``): resume
# cleanup removes only these, never a file the harness did not create
_CHUNK = r"a\d{6,}-r\d{5,}-c\d{7,}(-d\d+)*\.jsonl"
_OWN_CHUNK = re.compile(rf"{_CHUNK}(\.tmp)?|\.{_CHUNK}\..+\.tmp")  # the last: write_atomic's temp sibling


@contextlib.contextmanager
def private_files(mode: str = "private") -> Iterator[None]:
    """While inside: files created 0600 and directories 0700 (umask 077) for ``"private"``;
    ``"umask"`` leaves the process umask alone. Restores the umask on the way out."""
    if mode not in OUTPUT_MODES:
        raise ValueError(f"output mode {mode!r} is not one of {OUTPUT_MODES}")
    if mode == "umask":
        yield
        return
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


class CommittedIds(set[str]):
    """The ids of the committed results; ``digests`` maps each to the content digest it was
    computed from (:func:`~fabric_hpc.inference.intake.item_digest`; ids journalled before digests
    were recorded have none)."""

    def __init__(self, ids: Iterable[str] = (), digests: dict[str, str] | None = None) -> None:
        super().__init__(ids)
        self.digests: dict[str, str] = digests or {}


class MergeError(ExternalError):
    """Output ids differ from input ids (missing or duplicated results). Exit code 5."""


def journal_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every record of every journal file (in rank order), read a line at a time, each checked."""
    jdir = out / "journal"
    if not jdir.is_dir():
        return
    for path in sorted(jdir.glob("rank-*.jsonl")):
        yield from _file_records(path)


def _file_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one journal file, streamed; one that is not a journal record is a ConfigError."""
    for n, rec in enumerate(iter_json_lines(path), start=1):
        chunk, ids = rec.get("chunk"), rec.get("ids")
        digests = rec.get("digests", ids)
        if not isinstance(chunk, str) or "/" in chunk or chunk in ("", ".", "..") \
                or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
                or not isinstance(digests, list) or len(digests) != len(ids) \
                or not all(isinstance(d, str) for d in digests):
            raise ConfigError(f"{path}: record {n} is not a journal record (chunk name and list of ids)",
                              hint="the output directory is damaged; rerun into a new --output directory")
        yield rec


def committed_ids(out: str | os.PathLike[str]) -> CommittedIds:
    """Ids of every journalled chunk whose file exists (the resume skip-set), with their digests."""
    out = Path(out)
    done = CommittedIds()
    for rec in journal_records(out):
        if (out / "chunks" / rec["chunk"]).is_file():
            done.update(rec["ids"])
            if "digests" in rec:
                done.digests.update(zip(rec["ids"], rec["digests"]))
    return done


def remove_stale_results(out: str | os.PathLike[str]) -> None:
    """Remove an earlier merge's ``results.jsonl``: stale once the journals change (merge again)."""
    results = Path(out) / "results.jsonl"
    if results.is_symlink() or results.is_file():
        try:
            results.unlink()
        except FileNotFoundError:  # another rank's first commit removed it meanwhile
            return
        emit("infer.stale_results_removed", file=str(results))


def next_attempt(out: str | os.PathLike[str]) -> int:
    """Create and return the next attempt number (rank 0 only)."""
    adir = Path(out) / "attempts"
    adir.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(p.name) for p in adir.iterdir() if p.name.isdigit()), default=0)
    os.close(open_regular(adir / f"{n:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    fsync_dir(adir)  # durable before the attempt's chunks are named after it: never reused after a crash
    fsync_dir(adir.parent)
    return n


class RequestTimes(NamedTuple):
    """A result's timings (UNIX times, seconds) and its prompt's length: its ``metrics``."""

    arrival_time: float
    first_scheduled_time: float
    first_token_time: float
    finished_time: float
    num_prompt_tokens: int


# a result line's ``metrics`` (docs/inference.md, "Output records"), formatted at once: building a
# dict and letting json print its floats cost about three times as much CPU per result
_METRICS = ('"metrics":{"arrival_time":%.6f,"first_scheduled_time":%.6f,"first_token_time":%.6f,'
            '"finished_time":%.6f,"time_in_queue":%.6f,"time_to_first_token":%.6f,"e2e_latency":%.6f,'
            '"num_prompt_tokens":%d,"num_output_tokens":%d,"rank":%d,"attempt":%d}}')


_MAX_TAKEN = 1000  # chunk names found taken in a row (planted files) before a run gives up
#: Results per chunk at most (``--chunk-size``): a chunk's journal record lists its ids and digests, and at
#: worst (512-char ids of astral characters, 12 bytes each as JSON escapes) 10,000 of them make a line of
#: about 62 MB, a quarter of what a reader takes (:data:`~fabric_hpc.events.MAX_JSON_LINE_BYTES`, 256 MiB).
MAX_CHUNK_SIZE = 10_000


class ChunkSink:
    """The result sink of one rank: buffers results, commits chunks, journals them."""

    def __init__(self, out: str | os.PathLike[str], *, rank: int, attempt: int,
                 chunk_size: int = 512) -> None:
        self.out = Path(out)
        self.rank, self.attempt, self.chunk_size = rank, attempt, chunk_size
        (self.out / "chunks").mkdir(parents=True, exist_ok=True)
        self.journal = JsonLinesWriter(self.out / "journal" / f"rank-{rank:05d}.jsonl")
        self._file: Any = None  # the open chunk-in-progress: results stream to NAME.tmp
        self._tmp = self.out / "chunks" / "none.tmp"  # its path
        self._ids: list[str] = []
        self._digests: list[str | None] = []
        self.seq = 0
        self.committed = 0

    def __len__(self) -> int:
        return len(self._ids)

    def _name(self) -> str:
        return f"a{self.attempt:06d}-r{self.rank:05d}-c{self.seq:07d}.jsonl"

    def add(self, result: EngineResult, digest: str | None = None, times: RequestTimes | None = None,
            labels: dict[str, Any] | None = None) -> bool:
        """Write one result to the chunk in progress (``digest``: its item's
        :func:`~fabric_hpc.inference.intake.item_digest`, journalled; ``times``: written as its
        ``metrics`` with the latencies they imply, the token counts and this sink's ``rank`` and
        ``attempt``, never journalled or compared; ``labels``: the item's ``priority``/``class``,
        written after ``finish_reason``); True when it is full and should be committed. Nothing
        counts as done until :meth:`commit`."""
        if self._file is None:
            self._file = self._open_tmp()
        line = json.dumps({"id": result.id, "tokens": result.tokens, "finish_reason": result.finish_reason,
                           **(labels or {})}, separators=(",", ":"))
        if times is not None:
            a, s, f, d, prompt = times
            line = line[:-1] + "," + _METRICS % (a, s, f, d, s - a, f - a, d - a, prompt, len(result.tokens),
                                                  self.rank, self.attempt)
        with naming_file(self._tmp):
            self._file.write(line.encode() + b"\n")
        self._ids.append(result.id)
        self._digests.append(digest)
        return len(self._ids) >= self.chunk_size

    def commit(self) -> list[str]:
        """Finalise the chunk in progress (fsync, rename, fsync dir), journal it (fsync), and
        return the ids now acknowledged."""
        if not self._ids:
            return []
        fh = self._file
        with naming_file(self._tmp):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        self._file = None
        if not self.seq:  # this attempt commits more: an earlier merge is stale (merge again after it)
            remove_stale_results(self.out)
        name = self._finalise(self._tmp)
        fsync_dir(self.out / "chunks")
        record: dict[str, Any] = {"chunk": name, "n": len(self._ids), "ids": self._ids}
        if None not in self._digests:
            record["digests"] = self._digests
        self.journal.write(record)
        ids, self._ids, self._digests = self._ids, [], []
        self.seq += 1
        self.committed += len(ids)
        return ids

    def _open_tmp(self) -> Any:
        """The new temp file of the next chunk (O_EXCL: never through a link or FIFO planted under its
        predictable name, never over a file): a name taken moves on to the next sequence number."""
        for _ in range(_MAX_TAKEN):
            self._tmp = self.out / "chunks" / (self._name() + ".tmp")
            try:
                return os.fdopen(open_regular(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
            except ConfigError:
                if not os.path.lexists(self._tmp):
                    raise
            emit("infer.chunk_name_taken", chunk=self._tmp.name, dir=str(self._tmp.parent))
            self.seq += 1
        raise ConfigError(f"{_MAX_TAKEN} chunk names in a row are taken in {self._tmp.parent}",
                          hint="remove the files no run wrote there: only `fabric infer run` writes to "
                               "chunks/")

    def _finalise(self, tmp: Path) -> str:
        """Give the finished ``tmp`` its chunk name, never over an existing entry (a committed chunk of an
        attempt whose number was reused, a planted link): a name taken moves on to the next sequence
        number. Hard-linked, then the temp name removed (a crash between leaves a temp file that resume
        deletes); where the file system has no hard links, renamed to a name found free."""
        cdir = self.out / "chunks"
        while True:
            name = self._name()
            try:
                os.link(tmp, cdir / name, follow_symlinks=False)
            except FileExistsError:
                emit("infer.chunk_name_taken", chunk=name, dir=str(cdir))
                self.seq += 1
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if os.path.lexists(cdir / name):
                    self.seq += 1
                    continue
                os.rename(tmp, cdir / name)
                return name
            os.unlink(tmp)
            return name

    def close(self) -> None:
        """Close the journal; an uncommitted chunk stays a temp file (removed on resume)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.journal.close()


MERGE_ORDERS = ("input", "completion")
_RECOMPUTE = ("rerun `fabric infer run` with the same --output (it drops a damaged chunk and recomputes its "
              "items), then merge again")
_OFF = 1 << 40  # a result line's place packed in one int: (chunk * _OFF + offset) * _OFF + length


def _chunk_lines(path: Path) -> Iterator[tuple[str, int, int]]:
    """``(id, offset, length)`` of every result line of a committed chunk; a line that is not a
    result is a MergeError naming the chunk and the line (a committed chunk was written whole and
    fsync'd: it was damaged since)."""
    off = 0
    for n, line in enumerate(path.read_bytes().splitlines(keepends=True), 1):
        if line.strip():
            try:
                rid = str(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise MergeError(f"chunk {path.name} line {n} is not a result ({type(exc).__name__}): the "
                                 f"chunk was damaged after it was committed", hint=_RECOMPUTE) from None
            yield rid, off, len(line)
        off += len(line)


def merge_outputs(out: str | os.PathLike[str], expected_ids: Iterable[str], *,
                  order: str = "input") -> dict[str, Any]:
    """Check that every id of ``expected_ids`` has exactly one journalled result, then write
    ``results.jsonl``: in the order of ``expected_ids`` (``order="input"``: input file, then line, as
    vLLM returns results) or in commit order (``"completion"``). Results whose id the input no longer
    holds (a finished spool file removed since) are kept after the others, and counted
    (``without_input``). Reads ids from the chunk files themselves (not only the journal), so a
    duplicated or missing line is caught. Raises :class:`MergeError` naming counts and examples."""
    if order not in MERGE_ORDERS:
        raise ConfigError(f"merge order {order!r} is not one of {MERGE_ORDERS}", hint="use order='input'")
    out = Path(out)
    if not (out / "journal").is_dir():
        raise NotFoundError(f"{out} has no journal: not a fabric infer output directory")
    counts: Counter[str] = Counter()
    place: dict[str, int] = {}
    chunks = []
    for rec in journal_records(out):  # read a line at a time: a journal may hold millions of ids
        path = out / "chunks" / rec["chunk"]
        if not path.is_file():
            raise MergeError(f"journalled chunk {rec['chunk']} is missing from {out}/chunks",
                             hint="rerun `fabric infer run` with the same --output to recompute it")
        lines = list(_chunk_lines(path))
        if sorted(rid for rid, _, _ in lines) != sorted(rec["ids"]):
            raise MergeError(f"chunk {rec['chunk']} does not hold the ids its journal record names: it was "
                             f"damaged after it was committed", hint=_RECOMPUTE)
        for rid, off, length in lines:
            counts[rid] += 1
            place[rid] = (len(chunks) * _OFF + off) * _OFF + length
        chunks.append(path)
    expected = list(expected_ids)
    expected_set = set(expected)
    dup = sorted(i for i, c in counts.items() if c > 1)
    missing = sorted(expected_set - counts.keys())
    if dup or missing:
        raise MergeError(
            f"output ids != input ids: {len(missing)} missing {missing[:5]}, {len(dup)} duplicated "
            f"{dup[:20]}", hint="rerun `fabric infer run` with the same --output: it finishes missing work "
                                "and keeps the first copy of each duplicated id")
    extra = [i for i in place if i not in expected_set]  # in commit order
    _write_results(out / "results.jsonl", chunks, place, expected + extra if order == "input" else None)
    return {"results": str(out / "results.jsonl"), "items": len(expected) + len(extra), "chunks": len(chunks),
            "order": order, "without_input": len(extra), "without_input_ids": extra[:5]}


def _write_results(dest: Path, chunks: list[Path], place: dict[str, int], ids: list[str] | None) -> None:
    """The chunks whole, one after the other (``ids`` None), or the result line of each of ``ids``
    in that order (read with pread; at most 64 chunk files open at a time)."""
    with atomic_output(dest) as tmp, open(tmp, "wb") as fh:
        if ids is None:
            for path in chunks:
                fh.write(path.read_bytes())
            return
        fds: dict[int, int] = {}
        try:
            for rid in ids:
                where, length = divmod(place[rid], _OFF)
                chunk, off = divmod(where, _OFF)
                if chunk not in fds:
                    if len(fds) >= 64:
                        os.close(fds.pop(next(iter(fds))))
                    fds[chunk] = os.open(chunks[chunk], os.O_RDONLY | os.O_CLOEXEC)
                line = os.pread(fds[chunk], length, off)
                fh.write(line if line.endswith(b"\n") else line + b"\n")
        finally:
            for fd in fds.values():
                os.close(fd)
