"""The agent believes a job's last checkpoint only from files of the job's user: ``<ckpt_root>`` is
shared (1777), so another user can create ``<ckpt_root>/<user>/<job>/step-…/zarr.json`` and ``latest``
for a job that is not theirs. The rule is the TaskProlog's (one helper: ``task_fast.owned_dir``):
the user's directory and the job's are directories of the job's uid; below them every entry read is
the uid's too. Anything else: no checkpoint known (None)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.slurm.ckpt_time import job_checkpoint_dir, last_checkpoint_time
from tests.real import require_real
from tests.slurm.test_prolog_users import USERS, _user


@pytest.fixture(scope="module")
def two() -> tuple:
    require_real("slurm", os.geteuid() == 0,
                 "files of two users: the test creates them as root and chowns them")
    return tuple(_user(n) for n in USERS)


def _planted(tmp_path: Path, owner: str) -> tuple[Path, Path]:
    """A committed checkpoint of USERS[0]'s job 'train' under a 1777 root, every file owned by ``owner``."""
    from fabric_hpc.checkpoint.writer import save

    root = tmp_path / "ckroot"
    root.mkdir()
    root.chmod(0o1777)
    d = job_checkpoint_dir(root, USERS[0], "train")
    d.mkdir(parents=True)
    save(d, {"w": np.zeros(4, dtype=np.float32)}, step=7)
    manifest = d / "step-0000000007" / "zarr.json"
    os.utime(manifest, (5000.0, 5000.0))
    for p in [d.parent, *sorted(d.parent.rglob("*"))]:
        shutil.chown(p, owner)
    return root, d


def test_a_checkpoint_another_user_planted_is_not_believed(tmp_path: Path, two: tuple) -> None:
    root, _ = _planted(tmp_path, USERS[1])
    assert last_checkpoint_time(root, USERS[0], "train", now=1e12) is None


def test_the_jobs_own_checkpoint_is_believed(tmp_path: Path, two: tuple) -> None:
    root, _ = _planted(tmp_path, USERS[0])
    assert last_checkpoint_time(root, USERS[0], "train", now=1e12) == 5000.0


@pytest.mark.parametrize("foreign", ["user-dir", "job-dir", "latest", "step-dir", "zarr.json"])
def test_one_entry_of_another_user_is_enough_to_refuse(tmp_path: Path, two: tuple, foreign: str) -> None:
    root, d = _planted(tmp_path, USERS[0])
    path = {"user-dir": d.parent, "job-dir": d, "latest": d / "latest", "step-dir": d / "step-0000000007",
            "zarr.json": d / "step-0000000007" / "zarr.json"}[foreign]
    os.chown(path, two[1].pw_uid, -1)
    assert last_checkpoint_time(root, USERS[0], "train", now=1e12) is None


def test_a_user_without_a_passwd_entry_has_no_checkpoint(tmp_path: Path, two: tuple) -> None:
    root, _ = _planted(tmp_path, USERS[0])
    (root / USERS[0]).rename(root / "no-such-user-xyz")  # real files, but of no user the agent can name
    assert last_checkpoint_time(root, "no-such-user-xyz", "train", now=1e12) is None
