"""A failed write whose cut-back also fails leaves the cut pending; it used to be made on whatever file
was open at the next write: after a rotation (or reopen() after logrotate) ftruncate grew the new, empty
file to the old size with NULs, and the log then started with a NUL line the reader refuses. The cut
now belongs to the file it was meant for. An EIO from ftruncate cannot be made on demand, so the two
system calls are made to fail here (fault injection: the files are real)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fabric_hpc.events import JsonLinesWriter, read_json_lines

_write, _truncate = os.write, os.ftruncate


def _torn_write(fd: int, data: bytes) -> int:
    _write(fd, bytes(data[:20]))  # part of the record reaches the disk, then it is full
    raise OSError(errno.ENOSPC, "No space left on device")


def _eio(fd: int, size: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def _fail_with_pending_cut(w: JsonLinesWriter, monkeypatch: pytest.MonkeyPatch, *,
                           keep_eio: bool = False) -> None:
    with monkeypatch.context() as m:
        m.setattr(os, "write", _torn_write)
        m.setattr(os, "ftruncate", _eio)
        with pytest.raises(OSError, match="No space left"):
            w.write({"event": "two", "pad": "y" * 150})
    if keep_eio:
        monkeypatch.setattr(os, "ftruncate", _eio)


def _clean(path: Path) -> list[str]:
    assert b"\0" not in path.read_bytes()
    return [e["event"] for e in read_json_lines(path)]


def test_the_pending_cut_is_made_on_the_old_file_before_a_rotation(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.jsonl"
    w = JsonLinesWriter(path, fsync=False, max_bytes=400)
    w.write({"event": "one", "pad": "x" * 150})
    _fail_with_pending_cut(w, monkeypatch)
    w.write({"event": "three", "pad": "z" * 200})  # rotates
    w.close()
    assert _clean(path.with_name("a.jsonl.1")) == ["one"]
    assert _clean(path) == ["three"]


def test_reopen_after_logrotate_cuts_the_moved_file_and_starts_clean(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.jsonl"
    w = JsonLinesWriter(path, fsync=False)
    w.write({"event": "one"})
    _fail_with_pending_cut(w, monkeypatch)
    os.rename(path, tmp_path / "a.jsonl.old")  # logrotate
    w.reopen()
    w.write({"event": "three"})
    w.close()
    assert _clean(tmp_path / "a.jsonl.old") == ["one"]
    assert _clean(path) == ["three"]


def test_a_cut_that_still_fails_at_reopen_is_dropped_not_made_on_the_new_file(tmp_path: Path,
                                                                             monkeypatch) -> None:
    path = tmp_path / "a.jsonl"
    w = JsonLinesWriter(path, fsync=False)
    w.write({"event": "one"})
    _fail_with_pending_cut(w, monkeypatch, keep_eio=True)
    os.rename(path, tmp_path / "a.jsonl.old")
    w.reopen()
    monkeypatch.setattr(os, "ftruncate", _truncate)
    w.write({"event": "three"})
    w.close()
    assert _clean(path) == ["three"]
    assert (tmp_path / "a.jsonl.old").read_bytes().startswith(b'{"event"')  # one, then the fragment
