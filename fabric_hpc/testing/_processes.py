"""Process plumbing for the Slurm test cluster: find, signal and reap processes by pid.

Linux only (reads ``/proc``). Nothing here matches processes by name: a cluster's processes are
its own children, or carry its exact ``SLURM_CONF`` in their environment, or have their working
directory inside its directory (Slurm 25.11's slurmstepd rewrites its process title, which hides
its environment), or descend from those.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path


def resolves_to_loopback(hostname: str) -> bool:
    try:
        return socket.gethostbyname(hostname).startswith("127.")
    except OSError:
        return False


def die_with_parent() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the kernel stops the daemon if we die


_LIBC = ctypes.CDLL(None, use_errno=True)


def environ_values(key: str) -> dict[int, str]:
    """Pid -> value of ``key`` in its environment, for every process (but this one) that has it."""
    prefix = f"{key}=".encode()
    me = os.getpid()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry.name)] = item[len(prefix):].decode(errors="replace")
                break
    return found


#: In the environment of every daemon a test cluster starts (and so of its slurmstepd).
DAEMON_MARK = "FABRIC_TEST_SLURM_DAEMON"


def processes_with_env(key: str, value: str, *, any_of: tuple[str, ...] = ()) -> set[int]:
    """Pids (not ours) whose environment has exactly ``key=value`` (and, when ``any_of`` is given, one
    of those keys too: a shell that merely exported ``SLURM_CONF`` is not a job process)."""
    found = {pid for pid, v in environ_values(key).items() if v == value}
    if not any_of:
        return found
    marked: set[int] = set()
    for other in any_of:
        marked |= set(environ_values(other))
    return found & marked


def working_dirs() -> dict[int, Path]:
    """Pid -> working directory, for every process (but this one) whose ``/proc/PID/cwd`` is readable."""
    me = os.getpid()
    found: dict[int, Path] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            try:
                found[int(entry.name)] = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
    return found


def processes_in_dir(directory: Path) -> set[int]:
    """Pids (not ours) whose working directory is ``directory`` or below it."""
    return {pid for pid, cwd in working_dirs().items() if cwd == directory or directory in cwd.parents}


def _conf_above(cwd: Path, cache: dict[Path, str | None]) -> str | None:
    """``<dir>/etc/slurm.conf`` of the nearest directory at or above ``cwd`` that has one."""
    for place in (cwd, *cwd.parents):
        if place not in cache:
            conf = place / "etc" / "slurm.conf"
            cache[place] = str(conf) if place != Path("/") and conf.is_file() else None
        if cache[place] is not None:
            return cache[place]
    return None


def orphans(marker: str) -> set[int]:
    """Processes left by test clusters that died without stopping (their runner was SIGKILLed).

    A process is an orphan when its ``SLURM_CONF`` (or the ``etc/slurm.conf`` above its working
    directory) names a file that starts with ``marker`` and no ``slurmctld`` or ``munged`` of that
    configuration is alive any more, nor the runner named on that first line (``(runner pid N)``).
    """
    groups: dict[str, set[int]] = {}
    marked = set(environ_values("SLURM_JOB_ID")) | set(environ_values(DAEMON_MARK))
    for pid, conf in environ_values("SLURM_CONF").items():
        if pid in marked:  # a job process or a daemon's; not a shell that exported SLURM_CONF
            groups.setdefault(conf, set()).add(pid)
    cache: dict[Path, str | None] = {}
    for pid, cwd in working_dirs().items():
        conf = _conf_above(cwd, cache) if cwd.is_absolute() else None
        if conf is not None:
            groups.setdefault(conf, set()).add(pid)
    found: set[int] = set()
    for conf, pids in groups.items():
        try:
            with open(conf, encoding="utf-8", errors="replace") as f:
                first = f.readline()
        except OSError:
            continue
        runner = re.search(r"\(runner pid (\d+)\)", first)
        if not first.startswith(marker) or (runner and alive(int(runner.group(1)))):
            continue
        if any(_comm(pid) in ("slurmctld", "munged") for pid in pids):
            continue
        found |= pids | {child for pid in pids for child in descendants(pid)}
    return {pid for pid in found if alive(pid)}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6) as /proc/net shows them; None: unreadable."""
    found: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])  # st 0A: LISTEN
    except (OSError, ValueError):
        return None
    return found


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port``; True where /proc cannot tell
    (the caller's connect succeeded: as before). A port another process took is False."""
    inodes = _listening_inodes(port)
    if not inodes:
        return True
    try:
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return True
    return any(link[len("socket:["):-1] in inodes for link in fds if link.startswith("socket:["))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def terminate(procs: list[subprocess.Popen[bytes]], others: set[int], grace: float = 5.0,
               first: int = signal.SIGTERM) -> None:
    """``first`` (SIGTERM), wait up to ``grace`` seconds, then SIGKILL; reap our children."""
    for sig in (first, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs) and not any(alive(pid) for pid in others):
                return
            time.sleep(0.02)
    for proc in procs:
        proc.wait(timeout=10)
