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

Commit protocol for a chunk: results stream into ``name.tmp`` as they arrive (memory stays
O(1) per chunk); at commit: fsync, rename to ``name``, fsync the directory,
*then* append the journal record and fsync it; only after that are the ids acknowledged (the
token budget released, progress counted). A crash before the journal record leaves an orphan
chunk, which :func:`prepare_resume` deletes, so those ids are recomputed; a crash after it leaves
them done. Either way each id ends up in exactly one journalled chunk. Results are deterministic
per request (engine contract), so recomputation yields identical output. Should an id still
reach two journalled chunks (an output directory written by two runs at once, say),
:func:`dedupe_chunks` -- run by every resume -- keeps its first copy (journal files in rank
order, records in order) and rewrites the later chunks without it.

Permissions: :func:`private_files` (used by the runner and merge) sets the umask to 077 while
the harness writes, so every file it creates is 0600 and every directory 0700 whatever the
job's umask was (``--output-mode umask`` keeps the job's umask instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from fabric_hpc.atomic import atomic_output, fsync_dir, write_atomic
from fabric_hpc.errors import ConfigError, ExternalError, NotFoundError
from fabric_hpc.events import JsonLinesWriter, cut_torn_tail, emit, naming_file, read_json_lines
from fabric_hpc.inference.engine import EngineResult

__all__ = ["MERGE_ORDERS", "OUTPUT_MODES", "ChunkSink", "CommittedIds", "MergeError", "RequestTimes",
           "committed_ids", "dedupe_chunks", "drop_damaged_chunks", "drop_lost_chunks", "journal_records",
           "merge_outputs", "next_attempt", "prepare_resume", "private_files", "remove_stale_results"]

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
    jdir = out / "journal"
    if not jdir.is_dir():
        return
    for path in sorted(jdir.glob("rank-*.jsonl")):
        for n, rec in enumerate(read_json_lines(path), start=1):
            chunk, ids = rec.get("chunk"), rec.get("ids")
            digests = rec.get("digests", ids)
            if not isinstance(chunk, str) or "/" in chunk or chunk in ("", ".", "..") or not isinstance(ids, list) \
                    or not all(isinstance(i, str) for i in ids) or not isinstance(digests, list) \
                    or len(digests) != len(ids) or not all(isinstance(d, str) for d in digests):
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


def _without(path: Path, drop: set[str], dest: Path) -> list[str]:
    """Write ``path`` without the results of ``drop`` to ``dest`` (fsync'd); its ids."""
    kept, ids = [], []
    for line in path.read_bytes().splitlines():
        if line.strip() and json.loads(line)["id"] not in drop:
            kept.append(line + b"\n")
            ids.append(json.loads(line)["id"])
    write_atomic(dest, b"".join(kept))
    return ids


def _write_journal(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a journal file atomically (fsync'd) with ``records``."""
    write_atomic(path, b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))


def drop_lost_chunks(out: str | os.PathLike[str]) -> list[str]:
    """Remove the journal records whose chunk file is gone (deleted or lost since it was
    committed), so their ids count as not done and the new attempt recomputes them; return
    the chunk names dropped. Without this, merge would demand the lost chunk forever."""
    out = Path(out)
    for _ in journal_records(out):  # every record checked (a damaged one is a ConfigError) first
        pass
    lost: list[str] = []
    for jpath in sorted((out / "journal").glob("rank-*.jsonl")):
        records = read_json_lines(jpath)
        gone = [r["chunk"] for r in records if not (out / "chunks" / r["chunk"]).is_file()]
        if gone:
            lost.extend(gone)
            _write_journal(jpath, [r for r in records if r["chunk"] not in gone])
    if lost:
        emit("infer.lost_chunks", chunks=lost[:20], count=len(lost), dir=str(out))
    return lost


def _damage(path: Path, rec: dict[str, Any]) -> str | None:
    """Why the committed chunk ``path`` no longer matches its journal record ``rec`` (a line that is
    not a result, other ids), or None when it does: the check merge makes (:func:`merge_outputs`)."""
    try:
        ids = sorted(rid for rid, _, _ in _chunk_lines(path))
    except MergeError as exc:
        return exc.message
    return None if ids == sorted(rec["ids"]) else \
        f"chunk {path.name} does not hold the ids its journal record names"


def drop_damaged_chunks(out: str | os.PathLike[str]) -> list[str]:
    """Remove the journal records whose chunk was damaged since it was committed (truncated, edited:
    :func:`_damage`), so their ids count as not done and the new attempt recomputes them; the chunk
    is then an orphan that :func:`prepare_resume` deletes. Return the chunk names dropped. Reads
    every committed chunk once (as merge does). Without this a rerun skipped the items and merge
    failed on the chunk forever."""
    out = Path(out)
    damaged: list[str] = []
    for jpath in sorted((out / "journal").glob("rank-*.jsonl")):
        records = read_json_lines(jpath)
        bad = {r["chunk"]: why for r in records if (out / "chunks" / r["chunk"]).is_file()
               and (why := _damage(out / "chunks" / r["chunk"], r)) is not None}
        if bad:
            damaged.extend(bad)
            _write_journal(jpath, [r for r in records if r["chunk"] not in bad])
            for name, why in bad.items():
                emit("infer.damaged_chunk", chunk=name, reason=why[:300], dir=str(out))
    return damaged


def dedupe_chunks(out: str | os.PathLike[str]) -> list[str]:
    """Keep the first journalled copy of every id and rewrite later chunks without it.

    A changed chunk is written under a new name (``...-dN.jsonl``) before its journal file is
    replaced atomically; the old chunk becomes an orphan that :func:`prepare_resume` deletes, so
    a crash at any point leaves a consistent directory. Returns the duplicated ids removed."""
    out = Path(out)
    jdir, cdir = out / "journal", out / "chunks"
    if not jdir.is_dir():
        return []
    seen: set[str] = set()
    removed: list[str] = []
    for jpath in sorted(jdir.glob("rank-*.jsonl")):
        records, kept, dirty = read_json_lines(jpath), [], False
        for rec in records:
            dup = {i for i in rec["ids"] if i in seen} if (cdir / rec["chunk"]).is_file() else set()
            seen.update(rec["ids"] if (cdir / rec["chunk"]).is_file() else ())
            if not dup:
                kept.append(rec)
                continue
            removed.extend(sorted(dup))
            dirty = True
            if not set(rec["ids"]) - dup:   # every result a duplicate: the record goes
                continue
            stem, n = rec["chunk"].removesuffix(".jsonl"), 1
            while (cdir / f"{stem}-d{n}.jsonl").exists():
                n += 1
            name = f"{stem}-d{n}.jsonl"
            ids = _without(cdir / rec["chunk"], dup, cdir / name)
            new = {**rec, "chunk": name, "n": len(ids), "ids": ids}
            if "digests" in rec:
                digest = dict(zip(rec["ids"], rec["digests"]))
                new["digests"] = [digest[i] for i in ids]
            kept.append(new)
        if dirty:
            _write_journal(jpath, kept)
    if removed:
        emit("infer.dedupe", removed=len(removed), ids=removed[:20], dir=str(out))
    return removed


def _cut_torn_tails(out: Path) -> None:
    """Cut the torn last line (a write cut short by a full disk or a crash) off every journal and
    metrics file, so the new attempt's records start on a line of their own."""
    for path in (*sorted(out.glob("journal/rank-*.jsonl")), *sorted(out.glob("metrics/rank-*.jsonl"))):
        if cut := cut_torn_tail(path):
            emit("infer.torn_tail_cut", file=str(path), bytes=cut)


def remove_stale_results(out: str | os.PathLike[str]) -> None:
    """Remove an earlier merge's ``results.jsonl``: stale once the journals change (merge again)."""
    results = Path(out) / "results.jsonl"
    if results.is_symlink() or results.is_file():
        try:
            results.unlink()
        except FileNotFoundError:  # another rank's first commit removed it meanwhile
            return
        emit("infer.stale_results_removed", file=str(results))


def prepare_resume(out: str | os.PathLike[str]) -> int:
    """Cut torn last lines off the journals, forget chunks that are gone (:func:`drop_lost_chunks`)
    or damaged (:func:`drop_damaged_chunks`: their ids are recomputed), keep the first copy of any
    duplicated id (:func:`dedupe_chunks`) -- removing an earlier merge's ``results.jsonl`` when any
    of these changed the journals (it stays while nothing did: :class:`ChunkSink` removes it before the
    new attempt's first commit) --, then delete temp files and chunks no journal record names; return
    how many files were removed. Call on one rank, before any rank of the new attempt writes."""
    out = Path(out)
    _cut_torn_tails(out)
    cdir = out / "chunks"
    if not cdir.is_dir():
        return 0
    if drop_lost_chunks(out) + drop_damaged_chunks(out) + dedupe_chunks(out):
        remove_stale_results(out)  # it holds results no journal names any more, or misses recomputed ones
    named = {rec["chunk"] for rec in journal_records(out)}
    removed, foreign = 0, []
    for path in cdir.iterdir():
        if not _OWN_CHUNK.fullmatch(path.name):
            foreign.append(path.name)
        elif path.name not in named:
            path.unlink()
            removed += 1
    if removed:
        emit("infer.resume_cleanup", removed=removed, dir=str(out))
    if foreign:  # left alone (and never read: merge reads only journalled chunks)
        emit("infer.foreign_files_kept", files=sorted(foreign)[:20], count=len(foreign), dir=str(cdir))
    return removed


def next_attempt(out: str | os.PathLike[str]) -> int:
    """Create and return the next attempt number (rank 0 only)."""
    adir = Path(out) / "attempts"
    adir.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(p.name) for p in adir.iterdir() if p.name.isdigit()), default=0)
    (adir / f"{n:06d}").touch()
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


class ChunkSink:
    """The result sink of one rank: buffers results, commits chunks, journals them."""

    def __init__(self, out: str | os.PathLike[str], *, rank: int, attempt: int,
                 chunk_size: int = 512) -> None:
        self.out = Path(out)
        self.rank, self.attempt, self.chunk_size = rank, attempt, chunk_size
        (self.out / "chunks").mkdir(parents=True, exist_ok=True)
        self.journal = JsonLinesWriter(self.out / "journal" / f"rank-{rank:05d}.jsonl")
        self._file: Any = None  # the open chunk-in-progress: results stream to NAME.tmp
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
            self._file = open(self.out / "chunks" / (self._name() + ".tmp"), "wb")  # noqa: SIM115
        line = json.dumps({"id": result.id, "tokens": result.tokens, "finish_reason": result.finish_reason,
                           **(labels or {})}, separators=(",", ":"))
        if times is not None:
            a, s, f, d, prompt = times
            line = line[:-1] + "," + _METRICS % (a, s, f, d, s - a, f - a, d - a, prompt, len(result.tokens),
                                                  self.rank, self.attempt)
        with naming_file(self._file.name):
            self._file.write(line.encode() + b"\n")
        self._ids.append(result.id)
        self._digests.append(digest)
        return len(self._ids) >= self.chunk_size

    def commit(self) -> list[str]:
        """Finalise the chunk in progress (fsync, rename, fsync dir), journal it (fsync), and
        return the ids now acknowledged."""
        if not self._ids:
            return []
        name, fh = self._name(), self._file
        with naming_file(self.out / "chunks" / (name + ".tmp")):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        self._file = None
        if not self.seq:  # this attempt commits more: an earlier merge is stale (merge again after it)
            remove_stale_results(self.out)
        os.replace(self.out / "chunks" / (name + ".tmp"), self.out / "chunks" / name)
        fsync_dir(self.out / "chunks")
        record: dict[str, Any] = {"chunk": name, "n": len(self._ids), "ids": self._ids}
        if None not in self._digests:
            record["digests"] = self._digests
        self.journal.write(record)
        ids, self._ids, self._digests = self._ids, [], []
        self.seq += 1
        self.committed += len(ids)
        return ids

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
    records = list(journal_records(out))
    if not records and not (out / "journal").is_dir():
        raise NotFoundError(f"{out} has no journal: not a fabric infer output directory")
    counts: Counter[str] = Counter()
    place: dict[str, int] = {}
    chunks = []
    for rec in records:
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
