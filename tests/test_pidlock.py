"""PidLock: one holder per file; a lock made with ``remove=True`` leaves no file once released (the
inference merge lock: a failed ``fabric infer merge`` created ``.merge.lock`` and left it, which the
fuzz harness's "creates nothing outside its output" contract caught)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.pidlock import PidLock


def _lock(path: Path, remove: bool = False) -> PidLock:
    return PidLock(path, busy=lambda owner: f"held by {owner}", hint="wait", remove=remove)


def test_a_removing_lock_leaves_no_file_and_excludes_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / ".merge.lock"
    first = _lock(path, remove=True)
    first.acquire()
    assert path.read_text().strip() == str(os.getpid()) and first.holder() is not None
    with pytest.raises(ConfigError, match=f"held by {os.getpid()}"):
        _lock(path, remove=True).acquire()
    first.release()
    assert not path.exists() and first.holder() is None
    again = _lock(path, remove=True)
    again.acquire()
    again.release()
    assert not path.exists()


def test_a_waiter_that_opened_the_removed_file_locks_the_new_one(tmp_path: Path) -> None:
    """The holder removes the file as it lets go; a waiter whose open file is now gone must not hold a
    lock on it while a third process locks the new file."""
    path = tmp_path / "l"
    holder = _lock(path, remove=True)
    holder.acquire()
    stale = os.open(path, os.O_RDWR)  # what a waiter opened before the release
    try:
        holder.release()
        waiter = _lock(path, remove=True)
        waiter.acquire()
        assert waiter._same_file(waiter._fd)  # type: ignore[arg-type]
        assert os.fstat(stale).st_ino != os.stat(path).st_ino
        waiter.release()
    finally:
        os.close(stale)


def test_a_plain_lock_keeps_its_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    lock = _lock(path)
    lock.acquire()
    lock.release()
    assert path.exists() and lock.holder() is None
