"""A run killed while writing its first run.json leaves run.json's temporary sibling (and the lock)
in --output; the rerun resumes there instead of refusing the directory as someone else's ("is not
empty and holds no fabric run"; seen in CI: test_kill9_of_one_rank_at_planned_points_exactly_once)."""

from __future__ import annotations

import os
import subprocess
import sys

from fabric_hpc.atomic import temp_sibling
from fabric_hpc.inference.runner import foreign_output


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def test_a_killed_writers_run_json_temp_is_not_foreign(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".run.lock").write_text("")
    name = temp_sibling(out / "run.json").name.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    (out / name).write_text("{")
    assert foreign_output(out) is None
    assert not (out / name).exists()  # this host's dead writer's file, removed


def test_another_hosts_temp_is_not_foreign_either_and_is_left(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".run.json.otherhost-123-0a1b2c3d.tmp").write_text("{")
    assert foreign_output(out) is None
    assert (out / ".run.json.otherhost-123-0a1b2c3d.tmp").exists()


def test_other_files_are_still_foreign(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = foreign_output(out)
    assert err is not None and "notes.txt" in err.message
