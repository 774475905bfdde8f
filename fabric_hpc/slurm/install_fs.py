"""How ``fabric slurm install`` changes the owner and mode of what it makes in the state directory and
beside it: by an fd opened without following a symlink (:func:`give`)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from fabric_hpc.errors import ConfigError


def give(path: Path, uid: int | None, gid: int | None, mode: int, *, directory: bool = False,
          create: bool = False) -> bool:
    """Give ``path`` to ``uid``:``gid`` (None: keep the owner) with ``mode``, each only when it differs.
    The service user owns the state dir and may swap any name in it for a symlink, a FIFO or a hard link
    between a check and a chown: so nothing is done by name. The path is opened with O_NOFOLLOW (and
    O_NONBLOCK: a FIFO does not block), created with O_EXCL when missing and ``create``, checked on the
    fd (a directory, or a regular file with one link) and changed with fchown/fchmod on that fd.
    Returns whether it was created; ConfigError (nothing changed) for anything else at the path."""
    base = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    fd, made = None, False
    try:  # a file is given away only with one name (not a hard link to someone else's file)
        if create:
            with contextlib.suppress(FileExistsError):
                fd, made = os.open(path, base | os.O_CREAT | os.O_EXCL, 0o600), True
        if fd is None:
            fd = os.open(path, base)
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR: not a directory (or a symlink to one)
        raise not_ours(path, exc.strerror or str(exc), directory) from None
    try:
        st = os.fstat(fd)
        linked = uid is not None and st.st_nlink != 1  # a hard link to a file of someone else's
        if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode) and not linked):
            raise not_ours(path, "not a directory" if directory else
                            "not a regular file" if not stat.S_ISREG(st.st_mode) else
                            f"a hard link ({st.st_nlink} names)", directory)
        if uid is not None and (st.st_uid, st.st_gid) != (uid, gid):
            try:
                os.fchown(fd, uid, gid)
            except PermissionError:
                raise ConfigError(f"cannot give {path} to {uid}:{gid}",
                                  hint="run fabric slurm install as root") from None
        if made or stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return made


def not_ours(path: Path, why: str, directory: bool) -> ConfigError:
    return ConfigError(f"{path}: {why}; install gives it to the service user and changes it only as the "
                       f"{'directory' if directory else 'regular file'} it writes (nothing was changed)",
                       hint=f"remove {path} (someone with write access to its directory put it there) and "
                            "run install again")
