"""When a running job last committed a checkpoint: read from its checkpoint directory.

The TaskProlog gives each job ``FABRIC_CKPT_DIR = <ckpt_root>/<user>/<job name>``
(:func:`fabric_hpc.slurm.prolog.checkpoint_dir`); ``fabric_hpc.checkpoint`` commits a checkpoint
by writing ``step-NNNNNNNNNN/zarr.json`` and then the one-line ``latest`` pointer. The agent takes
the modification time of the manifest ``latest`` names as the job's last checkpoint.

The directory belongs to the job's user, so everything in it is untrusted: each path component is
opened with ``O_NOFOLLOW`` relative to its parent (a symlink anywhere is refused, not followed);
the root is shared (1777), so another user could create ``<user>/<job name>`` for someone else's job:
the user's and the job's directories must be the job's uid's (the TaskProlog's rule,
:func:`fabric_hpc.slurm.task_fast.owned_dir`), and so must ``latest``, the step directory and its
manifest (a user named in no passwd entry has no checkpoint);
``latest`` is read up to 64 bytes and must name a ``step-`` directory, the manifest must be a
regular file, and a time in the future counts as now. Anything else means "no checkpoint known"
(None): the scheduler then counts all work since the job's start as lost, the safe side.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

from fabric_hpc.slurm.prolog import safe_component
from fabric_hpc.slurm.task_fast import owned_dir

_STEP_DIR = re.compile(r"^step-\d{10}$")
_LATEST_MAX = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def job_checkpoint_dir(ckpt_root: str | os.PathLike[str], user: str, job_name: str) -> Path:
    """``<ckpt_root>/<user>/<job name>`` with the TaskProlog's naming (one safe component each)."""
    return Path(ckpt_root) / safe_component(user, tag=False) / safe_component(job_name or "job")


def last_checkpoint_time(ckpt_root: str | os.PathLike[str], user: str, job_name: str,
                         *, now: float) -> float | None:
    """mtime of the latest committed manifest of the job's checkpoint directory, or None (module doc)."""
    try:
        uid = pwd.getpwnam(user).pw_uid if user else None
    except KeyError:
        uid = None
    if uid is None:
        return None
    root = os.path.realpath(ckpt_root)  # the admin's root may be a symlink; below it nothing may be
    parts = [safe_component(user, tag=False), safe_component(job_name or "job")]
    fds: list[int] = []
    try:
        fds.append(os.open(root, _DIR_FLAGS))
        for part in parts:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            if not owned_dir(os.fstat(fds[-1]), uid):
                return None
        name = _read_small(fds[-1], "latest", uid)
        if name is None or not _STEP_DIR.match(name):
            return None
        fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
        if not owned_dir(os.fstat(fds[-1]), uid):
            return None
        st = os.stat("zarr.json", dir_fd=fds[-1], follow_symlinks=False)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
        return None
    return min(st.st_mtime, now)


def _read_small(dir_fd: int, name: str, uid: int) -> str | None:
    """A regular file of ``uid`` of at most ``_LATEST_MAX`` bytes, stripped; None otherwise."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return None
        data = os.read(fd, _LATEST_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > _LATEST_MAX:
        return None
    return data.decode("ascii", "replace").strip()
