"""Repairing an output directory before a run resumes in it (:func:`prepare_resume`, on one rank):
journal records whose chunk is gone or damaged are dropped (their items are recomputed), an id
journalled twice keeps its first copy, and files no journal record names are deleted. Journals are
read a line at a time and rewritten only where a record changes: one may hold millions of ids.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import atomic_output, write_atomic
from fabric_hpc.events import cut_torn_tail, emit
from fabric_hpc.inference.journal import (_OWN_CHUNK, MergeError, _chunk_lines, _file_records,
                                          journal_records, remove_stale_results)

__all__ = ["dedupe_chunks", "drop_damaged_chunks", "drop_lost_chunks", "prepare_resume"]


def _without(path: Path, drop: set[str], dest: Path) -> list[str]:
    """Write ``path`` without the results of ``drop`` to ``dest`` (fsync'd); its ids."""
    kept, ids = [], []
    for line in path.read_bytes().splitlines():
        if line.strip() and json.loads(line)["id"] not in drop:
            kept.append(line + b"\n")
            ids.append(json.loads(line)["id"])
    write_atomic(dest, b"".join(kept))
    return ids


def _write_journal(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace a journal file atomically (fsync'd) with ``records``, written as they come."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")


def _drop_records(out: Path, why: Callable[[dict[str, Any]], str | None]) -> list[tuple[str, str]]:
    """Remove from every journal file the records for which ``why`` names a reason: one pass reads
    each file (a line at a time), a second rewrites it only where a record goes. ``(chunk, reason)``
    of each record dropped."""
    dropped: list[tuple[str, str]] = []
    for jpath in sorted((out / "journal").glob("rank-*.jsonl")):
        bad = {rec["chunk"]: reason for rec in _file_records(jpath) if (reason := why(rec)) is not None}
        if bad:
            dropped.extend(bad.items())
            _write_journal(jpath, (rec for rec in _file_records(jpath) if rec["chunk"] not in bad))
    return dropped


def drop_lost_chunks(out: str | os.PathLike[str]) -> list[str]:
    """Remove the journal records whose chunk file is gone (deleted or lost since it was
    committed), so their ids count as not done and the new attempt recomputes them; return
    the chunk names dropped. Without this, merge would demand the lost chunk forever."""
    out = Path(out)
    collections.deque(journal_records(out), maxlen=0)  # each record checked first (damaged: ConfigError)
    lost = [name for name, _ in _drop_records(
        out, lambda rec: None if (out / "chunks" / rec["chunk"]).is_file() else "gone")]
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
    damaged = _drop_records(out, lambda rec: _damage(out / "chunks" / rec["chunk"], rec)
                            if (out / "chunks" / rec["chunk"]).is_file() else None)
    for name, why in damaged:
        emit("infer.damaged_chunk", chunk=name, reason=why[:300], dir=str(out))
    return [name for name, _ in damaged]


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
        changed: dict[int, dict[str, Any] | None] = {}  # record number -> its new record (None: it goes)
        for k, rec in enumerate(_file_records(jpath)):
            present = (cdir / rec["chunk"]).is_file()
            dup = {i for i in rec["ids"] if i in seen} if present else set()
            seen.update(rec["ids"] if present else ())
            if dup:
                removed.extend(sorted(dup))
                changed[k] = _without_dups(cdir, rec, dup)
        if changed:  # the journal rewritten a line at a time: records as they were, or as changed
            now = (changed.get(k, rec) for k, rec in enumerate(_file_records(jpath)))
            _write_journal(jpath, (rec for rec in now if rec is not None))
    if removed:
        emit("infer.dedupe", removed=len(removed), ids=removed[:20], dir=str(out))
    return removed


def _without_dups(cdir: Path, rec: dict[str, Any], dup: set[str]) -> dict[str, Any] | None:
    """The journal record of ``rec``'s chunk rewritten under a new name (``...-dN.jsonl``) without the
    ids ``dup``; None when every result is a duplicate (the record goes)."""
    if not set(rec["ids"]) - dup:
        return None
    stem, n = rec["chunk"].removesuffix(".jsonl"), 1
    while (cdir / f"{stem}-d{n}.jsonl").exists():
        n += 1
    name = f"{stem}-d{n}.jsonl"
    ids = _without(cdir / rec["chunk"], dup, cdir / name)
    new = {**rec, "chunk": name, "n": len(ids), "ids": ids}
    if "digests" in rec:
        digest = dict(zip(rec["ids"], rec["digests"]))
        new["digests"] = [digest[i] for i in ids]
    return new


def _cut_torn_tails(out: Path) -> None:
    """Cut the torn last line (a write cut short by a full disk or a crash) off every journal and
    metrics file, so the new attempt's records start on a line of their own."""
    for path in (*sorted(out.glob("journal/rank-*.jsonl")), *sorted(out.glob("metrics/rank-*.jsonl"))):
        if cut := cut_torn_tail(path):
            emit("infer.torn_tail_cut", file=str(path), bytes=cut)


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
    # also without chunks/ (deleted whole): every record then names a lost chunk and goes
    if drop_lost_chunks(out) + drop_damaged_chunks(out) + dedupe_chunks(out):
        remove_stale_results(out)  # it holds results no journal names any more, or misses recomputed ones
    if not cdir.is_dir():
        return 0
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
