"""An exclusive ``flock`` on a small file that holds the owner's pid.

One live owner per file (the agent per state directory, an inference run per output directory);
the kernel drops the lock when the process dies, so a crash never leaves a stale lock behind.
The file is never opened through a symbolic link, nor used when it is not a regular file (a root
agent once wrote its pid through ``agent.lock -> /etc/passwd``): ConfigError naming it.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import open_regular


class PidLock:
    """``acquire`` takes the lock or raises :class:`~fabric_hpc.errors.ConfigError` with
    ``busy(owner pid text)`` and ``hint``; ``holder`` says who holds it without taking it."""

    def __init__(self, path: Path, *, busy: Callable[[str], str], hint: str, mode: int = 0o600,
                 note: str = "", remove: bool = False) -> None:
        self.path, self._busy, self._hint, self._mode = Path(path), busy, hint, mode
        self._note = note  # written after the pid on the owner's line (who it is, for ``busy``)
        self._remove = remove  # release removes the file (a short-lived lock that must leave nothing)
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds for another holder to let go."""
        deadline = time.monotonic() + wait_s
        while True:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, self._mode)  # never through a link
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() < deadline:
                    os.close(fd)
                    time.sleep(0.02)
                    continue
                owner = os.pread(fd, 256, 0).decode(errors="replace").strip()
                os.close(fd)
                raise ConfigError(self._busy(owner or "?"), hint=self._hint) from None
            if self._same_file(fd):
                break
            os.close(fd)  # a holder removed the file we opened as it let go: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}{' ' + self._note if self._note else ''}\n".encode(), 0)
        self._fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            if self._remove:  # still holding it: a waiter that opened this file retries on a new one
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """pid of the live holder (-1 when its pid is unreadable), None when nobody holds it."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # none, or a symbolic link: not a lock anyone holds
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip().split(" ")[0]
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)
        return None
