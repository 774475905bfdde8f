"""Errors of save() and restore() that escaped as raw OSError, or did the wrong thing silently
(a prober's report): a read-only root that exists, names longer than PATH_MAX, names='model'."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, restore, save

REPO = Path(__file__).resolve().parents[2]

_SAVE = """
import sys
import numpy as np
from fabric_hpc.checkpoint import save
try:
    save(sys.argv[1], {"w": np.ones(2)}, step=int(sys.argv[2]))
    print("saved")
except Exception as e:
    print(type(e).__name__, e.message, "| fix:", e.hint)
"""


def test_save_into_an_existing_root_on_a_read_only_mount_names_the_cause(tmp_path: Path) -> None:
    """A new root there said "mounted read-only"; an existing one raised OSError EROFS from .lock."""
    from tests.checkpoint.test_probe_fixes import _unshare
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    py = f"PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -c {shlex.quote(_SAVE)}"
    script = (f"mount -t tmpfs tmpfs {mnt} && {py} {mnt}/ck 1 && mount -o remount,ro {mnt} && "
              f"{py} {mnt}/ck 2 && {py} {mnt}/new 1")
    proc = subprocess.run([*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0] == "saved", proc.stderr
    for line in lines[1:]:
        assert line.startswith("CheckpointIOError") and "Read-only file system" in line, lines
        assert "fix: that filesystem is mounted read-only" in line, lines
    assert len(lines) == 3


def test_a_name_longer_than_path_max_is_refused_before_writing(tmp_path: Path) -> None:
    name = ("a" * 150 + "/") * 30 + "x"
    state: dict = {}
    node = state
    for part in name.split("/")[:-1]:
        node = node.setdefault(part, {})
    node["x"] = np.ones(2)
    with pytest.raises(CheckpointError) as info:
        save(tmp_path / "ck", state, step=1)
    assert "aaaa" in info.value.message and "a/x" in info.value.message and "4096" in info.value.message
    assert ".tmp-" not in info.value.message and info.value.hint
    assert not [n for n in os.listdir(tmp_path / "ck") if n.startswith(".tmp-")] \
        if (tmp_path / "ck").exists() else True


def test_restore_names_as_a_string_is_refused_with_the_fix(tmp_path: Path) -> None:
    save(tmp_path / "ck", {"model": {"w": np.ones(2)}, "m": np.ones(1)}, step=1)
    with pytest.raises(CheckpointError) as info:
        restore(tmp_path / "ck", names="model")
    assert "names" in info.value.message and "names=['model']" in info.value.hint
    assert list(restore(tmp_path / "ck", names=["model"])) == ["model"]
