"""fabric_hpc.atomic: the one file-replacing helper (real files, real permissions)."""

from __future__ import annotations

import os
import stat

import pytest

from fabric_hpc.atomic import atomic_output, write_atomic


def _entries(d):
    return sorted(p.name for p in d.iterdir())


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    assert write_atomic(target, "new ü") == target
    assert target.read_text(encoding="utf-8") == "new ü"
    write_atomic(target, b"\x00bytes", durable=False)
    assert target.read_bytes() == b"\x00bytes"
    assert _entries(tmp_path) == ["state.json"]


def test_mode_is_given_or_follows_the_umask(tmp_path):
    write_atomic(tmp_path / "a", "x", mode=0o640)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o640
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "b", "x")
        with atomic_output(tmp_path / "c") as tmp:
            tmp.write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "b").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o640


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    d = tmp_path / "d"
    d.mkdir()
    (d / "out.json").symlink_to(outside)
    write_atomic(d / "out.json", "mine")
    assert outside.read_text() == "keep"
    assert not (d / "out.json").is_symlink() and (d / "out.json").read_text() == "mine"


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "results.jsonl"
    target.write_text("complete old results")
    with pytest.raises(RuntimeError, match="disk full"), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "complete old results"
    assert _entries(tmp_path) == ["results.jsonl"]


def test_a_target_that_cannot_be_replaced_leaves_nothing_behind(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "inside").write_text("x")
    with pytest.raises(OSError):  # rename over a non-empty directory
        write_atomic(tmp_path / "adir", "data")
    assert _entries(tmp_path) == ["adir"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing-dir" / "f", "data")
    assert _entries(tmp_path) == ["adir"]
