"""Reading the lines of work: a spool directory of ``*.jsonl`` files (or one file) and a stream (stdin).

A run reads a *snapshot* of the spool (:func:`spool_snapshot`): the names, sizes and inodes of
its ``*.jsonl`` files when the run started, taken once (on MPI rank 0, broadcast to the others).
Every pass over the input reads exactly those files, each up to its recorded size; files that
arrive later belong to the next run. Compressed input is refused with the command that undoes it;
a line over ``MAX_LINE_BYTES`` is cut, for :func:`~fabric_hpc.inference.intake.parse_item` to reject.
What one line must hold is :mod:`fabric_hpc.inference.intake`'s business.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fabric_hpc.errors import ConfigError, ExternalError, NotFoundError
from fabric_hpc.events import open_regular
from fabric_hpc.inputs import compression_of, decompress_command, to_stdout

__all__ = ["MAX_LINE_BYTES", "checked_snapshot", "compression_of", "ignored_entries", "load_snapshot",
           "snapshot_lines", "spool_files", "spool_lines", "spool_snapshot", "stream_lines"]

MAX_LINE_BYTES = 16 << 20


def _refuse_compressed(path: Path | str, head: bytes) -> None:
    if found := compression_of(head):
        name, cmd = found
        if path == "<stdin>":  # a stream: no file to decompress, but the pipe can
            raise ConfigError(f"the input on stdin is {name}-compressed: work items are plain JSON lines",
                              hint=f"decompress it in the pipe: ... | {to_stdout(cmd)} | "
                                   "fabric infer run --input - ...")
        raise ConfigError(f"input {path} is {name}-compressed: work items are plain JSON lines",
                          hint=f"decompress it first, then rerun: {decompress_command(path, cmd)}")


class _Overlong(bytes):
    """The start of a line longer than MAX_LINE_BYTES (what the dead letter keeps of it)."""


def spool_files(spool: str | os.PathLike[str]) -> list[Path]:
    """The ``*.jsonl`` files of a spool directory (or the one file given), in name order."""
    path = Path(spool)
    if path.is_file():
        return [path]
    if not path.is_dir():
        hint = "give a directory of *.jsonl files, a .jsonl file, or '-' for stdin"
        if path.exists():  # a FIFO, socket or device: never read as a spool (a FIFO could block forever)
            from fabric_hpc.inputs import kind_of
            kind = kind_of(path.stat().st_mode)
            raise ConfigError(f"input spool {path} is {kind}, not a file or directory",
                              hint=hint + " (pipe into --input - instead)")
        raise NotFoundError(f"input spool {path} does not exist", hint=hint)
    return sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())


def ignored_entries(spool: str | os.PathLike[str]) -> list[str]:
    """The entries of a spool directory named like work (``*.jsonl`` in any case) that are not read,
    each with why: ``'A.JSONL' (the suffix is not lower-case .jsonl)``, ``'f.jsonl' (a FIFO, not a
    regular file)``; none for a single file."""
    from fabric_hpc.inputs import kind_of

    path = Path(spool)
    if not path.is_dir():
        return []
    out = []
    for p in sorted(path.iterdir()):
        if p.suffix.lower() in (".gz", ".zst", ".bz2", ".xz") and p.stem.lower().endswith(".jsonl"):
            out.append(f"{p.name!r} (compressed: decompress it first, e.g. gunzip -k, into *.jsonl)")
            continue
        if p.suffix.lower() != ".jsonl":
            continue
        if p.suffix != ".jsonl":
            out.append(f"{p.name!r} (the suffix is not lower-case .jsonl)")
            continue
        try:
            mode = p.stat().st_mode
        except OSError:  # a dangling link, or gone meanwhile
            out.append(f"{p.name!r} (cannot be read: a dangling link?)")
            continue
        if not stat.S_ISREG(mode):
            out.append(f"{p.name!r} ({kind_of(mode)}, not a regular file)")
    return out


def spool_snapshot(spool: str | os.PathLike[str]) -> dict[str, Any]:
    """The spool as it is now: ``{"spool", "files": [{"name", "size", "ino"}]}`` in name order
    (a file that vanishes while listing is left out)."""
    path = Path(spool)
    files = []
    for p in spool_files(path):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        files.append({"name": p.name, "size": st.st_size, "ino": st.st_ino})
    return {"spool": str(path), "single_file": path.is_file(), "files": files}


def checked_snapshot(spool: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`spool_snapshot` for a run: a spool without a single ``*.jsonl`` file is a
    ConfigError naming the files it ignored (a batch job with no input is a mistake)."""
    snap = spool_snapshot(spool)
    if not snap["files"]:
        path = Path(spool)
        names = sorted(p.name for p in path.iterdir())
        seen = (f"it holds only {', '.join(repr(n) for n in names[:8])}{' ...' if len(names) > 8 else ''}, "
                f"which are ignored") if names else "it is empty"
        if ignored := ignored_entries(path):
            seen += f"; named like work but not read: {', '.join(ignored[:8])}"
        raise ConfigError(f"input spool {path} has no *.jsonl file to read: {seen}",
                          hint="only complete files named *.jsonl (lower case) are read: producers write "
                               "NAME.tmp and rename it to NAME.jsonl; check --input")
    base = Path(spool)
    for entry in snap["files"]:  # one clear error, not a dead letter per line
        path = base if snap["single_file"] else base / entry["name"]
        head = b""
        with contextlib.suppress(OSError, ConfigError), \
                os.fdopen(open_regular(path, os.O_RDONLY, follow=True), "rb") as fh:  # a FIFO: refused later
            head = fh.read(8)
        _refuse_compressed(path, head)  # outside the suppression: its ConfigError is the answer
    return snap


def load_snapshot(path: Path) -> dict[str, Any]:
    """A spool snapshot written by an earlier attempt, checked before use: a damaged one is a
    ConfigError, and a name that is not a plain file name can never point outside the spool."""
    from fabric_hpc.inputs import read_json

    doc = read_json(path, what="spool snapshot", limit=64 << 20)
    files = doc.get("files") if isinstance(doc, dict) else None
    ok = (isinstance(files, list) and isinstance(doc.get("spool"), str)
          and isinstance(doc.get("single_file", False), bool)
          and all(isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"] not in ("", ".", "..")
                  and "/" not in f["name"] and "\0" not in f["name"]
                  and all(type(f.get(k)) is int and f[k] >= 0 for k in ("size", "ino")) for f in files))
    if not ok:
        raise ConfigError(f"{path}: not a spool snapshot of this harness (damaged or edited)",
                          hint="delete it: merge then re-reads the spool as it is now")
    return doc


def _limited_lines(fh: IO[bytes], size: int | None) -> Iterator[bytes]:
    """Lines of ``fh`` up to ``size`` bytes; a line over MAX_LINE_BYTES is cut (and rejected)."""
    left = size
    while left is None or left > 0:
        want = MAX_LINE_BYTES + 1 if left is None else min(MAX_LINE_BYTES + 1, left)
        line = fh.readline(want)
        if not line:
            return
        if left is not None:
            left -= len(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while left is None or left > 0:  # skip the rest of the over-long line
                more = fh.readline(1 << 20 if left is None else min(1 << 20, left))
                if not more:
                    break
                if left is not None:
                    left -= len(more)
                if more.endswith(b"\n"):
                    break
            line = _Overlong(line[:4096])
        yield line


def snapshot_lines(snapshot: dict[str, Any]) -> Iterator[tuple[str, int, bytes]]:
    """``(source, line number, raw line)`` of every non-blank line of the files of a snapshot,
    each read up to its recorded size. A file replaced or truncated since is an ExternalError."""
    base = Path(snapshot["spool"])
    for entry in snapshot["files"]:
        path = base if snapshot.get("single_file") else base / entry["name"]
        try:  # never blocks: a spool file replaced by a FIFO is refused below (not a regular file)
            fh = os.fdopen(open_regular(path, os.O_RDONLY, follow=True), "rb")
        except ConfigError:
            raise ExternalError(f"spool file {path} was replaced during the run by something that is not a "
                                "regular file (a FIFO, socket or device)",
                                hint="leave spool files in place until the run is merged") from None
        except OSError as exc:
            raise ExternalError(f"spool file {path} vanished during the run ({exc.strerror})",
                                hint="leave spool files in place until the run is merged") from None
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != entry["ino"] or st.st_size < entry["size"]:
                raise ExternalError(f"spool file {path} was replaced or truncated during the run",
                                    hint="producers add new files (rename into the spool); "
                                         "never rewrite one the harness may be reading")
            _refuse_compressed(path, fh.read(8))
            fh.seek(0)
            for n, line in enumerate(_limited_lines(fh, entry["size"]), 1):
                if line.strip():
                    yield entry["name"], n, line


def spool_lines(spool: str | os.PathLike[str]) -> Iterator[tuple[str, int, bytes]]:
    """``(source, line number, raw line)`` for every non-blank line of the spool as it is now."""
    yield from snapshot_lines(spool_snapshot(spool))


def stream_lines(stream: IO[bytes], source: str = "<stdin>") -> Iterator[tuple[str, int, bytes]]:
    """``(source, line number, raw line)`` for every non-blank line of a stream (stdin, ``--input -``),
    read as spool files are: a line over MAX_LINE_BYTES is cut (and rejected), never held whole."""
    for n, line in enumerate(_limited_lines(stream, None), 1):
        if n == 1:
            _refuse_compressed(source, line)
        if line.strip():
            yield source, n, line
