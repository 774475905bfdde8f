"""``fabric place --commit`` on a state file several users share (a 0777 directory, state.json 0666):
each user's commit keeps the file's mode, and the lock beside it (``.state.json.lock``) is usable by
those the state file is shared with. Two real users (setpriv), as in a shared project directory."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real import require_real
from tests.slurm.test_prolog_users import USERS, _user

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def shared() -> Iterator[tuple[Path, list]]:
    require_real("slurm", os.geteuid() == 0 and shutil.which("setpriv") is not None,
                 "two-user tests create users and need root and setpriv (util-linux)")
    users = [_user(n) for n in USERS]
    base = Path(tempfile.mkdtemp(prefix="fabric-place-shared-", dir="/tmp"))
    base.chmod(0o755)
    d = base / "proj"
    d.mkdir()
    d.chmod(0o777)
    state = d / "state.json"
    state.write_text(json.dumps({"version": 1}))
    state.chmod(0o666)
    yield state, users
    shutil.rmtree(base, ignore_errors=True)


def _commit(user, state: Path, job: str) -> subprocess.CompletedProcess:
    argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            sys.executable, "-m", "fabric_hpc.cli", "place", "-t", "superpod:sus=1", "-r", "nodes=1,gpus=8",
            "-s", str(state), "--commit", job]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/tmp"}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, umask=0o022)
    if out.returncode == 126 or "ModuleNotFoundError" in out.stderr:
        pytest.skip(f"{sys.executable} or {REPO} cannot be read by other users here")
    return out


def test_two_users_commit_in_turn_to_one_shared_state_file(shared: tuple[Path, list]) -> None:
    state, users = shared
    first = _commit(users[0], state, "job-a")
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o666  # the shared mode is kept, not the umask's
    lock = state.parent / ".state.json.lock"
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o666  # the lock follows the state file's mode
    second = _commit(users[1], state, "job-b")
    assert second.returncode == 0, second.stderr
    jobs = json.loads(state.read_text())
    assert {"job-a", "job-b"} <= set(json.dumps(jobs).replace('"', " ").split()), jobs
    again = _commit(users[0], state, "job-c")
    assert again.returncode == 0, again.stderr


def test_a_lock_others_cannot_use_names_it_and_the_fix(shared: tuple[Path, list]) -> None:
    """A lock left by an older fabric (0644, another user's): one clear error line with the fix."""
    state, users = shared
    lock = state.parent / ".state.json.lock"
    lock.write_text("")
    os.chown(lock, users[0].pw_uid, users[0].pw_gid)
    lock.chmod(0o644)
    out = _commit(users[1], state, "job-b")
    assert out.returncode == 3, out.stderr
    assert "Traceback" not in out.stderr and str(lock) in out.stderr, out.stderr
    assert "chmod" in out.stderr and "rm " in out.stderr, out.stderr
