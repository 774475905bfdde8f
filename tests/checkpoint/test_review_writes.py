"""A review of the checkpoint write paths: a retried tiered drain whose old node marker let another node
commit the step with chunks missing; a failed drain dropped silently when the TieredStore closed (or never
closed) while its only copy sat on node-local disk; an I/O error on the root's fsync just after a step's
rename left ``latest`` on the previous step. Each test failed before its fix."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import fsio, restore, save, tiers, verify
from fabric_hpc.checkpoint.store import list_checkpoints


class ThreadComm:
    """Two ranks as threads, through the communicator calls save_local makes (bcast, gather)."""

    def __init__(self, box: dict, rank: int) -> None:
        self.box, self.rank = box, rank

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return 2

    def bcast(self, value, root: int = 0):
        if self.rank == root:
            self.box["b"] = value
        self.box["bar"].wait()
        out = self.box["b"]
        self.box["bar"].wait()
        return out

    def gather(self, value, root: int = 0):
        self.box[self.rank] = value
        self.box["bar"].wait()
        out = [self.box[0], self.box[1]] if self.rank == root else None
        self.box["bar"].wait()
        return out


def _two_node_parts(base: Path, shared: Path) -> dict[int, tiers.LocalPart]:
    box: dict = {"bar": threading.Barrier(2)}
    parts: dict[int, tiers.LocalPart] = {}

    def rank(r: int) -> None:
        state = {"a": np.full(1000, 1.0), "b": np.full(1000, 2.0)}
        parts[r] = tiers.save_local(base / f"local{r}", state, step=1, comm=ThreadComm(box, r), node=f"n{r}",
                                    shared=shared)[1]

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return parts


def test_a_retried_drain_never_lets_another_node_commit_its_missing_chunks(tmp_path: Path,
                                                                          monkeypatch) -> None:
    """Node 0 drained step 1, node 1 died first; in the requeued job node 0 drains again (each chunk deleted,
    then copied anew) while node 1 drains: node 1 committed on node 0's old marker, a chunk missing."""
    shared = tmp_path / "shared"
    parts = _two_node_parts(tmp_path, shared)
    assert tiers.drain(parts[0], shared) is None  # node 1 has not drained
    real, seen = tiers._copy_file, []

    def copy_while_node1_drains(src: Path, dst: Path) -> None:
        monkeypatch.setattr(tiers, "_copy_file", real)
        seen.append(tiers.drain(parts[1], shared))  # node 1 finishes in the middle of node 0's copy
        real(src, dst)

    monkeypatch.setattr(tiers, "_copy_file", copy_while_node1_drains)
    committed = tiers.drain(parts[0], shared)
    assert seen == [None]  # node 0's marker was gone: node 1 did not commit
    assert committed is not None and verify(shared).problems == []
    assert restore(shared)["a"].tolist() == [1.0] * 1000


def test_a_drain_error_is_raised_when_the_store_closes(tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiers, "_copy_chunks", full)
    with pytest.raises(OSError, match="No space left"):
        with tiers.TieredStore(tmp_path / "local", tmp_path / "shared") as store:
            store.save({"w": np.arange(10.0)}, step=7)


def test_a_store_never_closed_finishes_its_drain_at_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import numpy as np
        from fabric_hpc.checkpoint import tiers
        t = tiers.TieredStore({str(tmp_path / 'local')!r}, {str(tmp_path / 'shared')!r})
        t.save({{"w": np.arange(1e6)}}, step=9)
    """)  # no close(): the interpreter exits at once
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 0, done.stderr
    assert [r.step for r in list_checkpoints(tmp_path / "shared")] == [9]


def test_an_io_error_on_the_roots_fsync_after_the_rename_still_moves_latest(tmp_path: Path,
                                                                            monkeypatch) -> None:
    root = tmp_path / "ck"
    save(root, {"w": np.zeros(3)}, step=1)
    real, armed = fsio.fsync_dir, [True]

    def eio_once(path) -> None:
        if armed[0] and Path(path) == root and (root / "step-0000000002").is_dir():
            armed[0] = False
            raise OSError(errno.EIO, "Input/output error")
        real(path)

    monkeypatch.setattr(fsio, "fsync_dir", eio_once)
    save(root, {"w": np.ones(3)}, step=2)
    assert not armed[0]  # the error happened, after the rename
    assert (root / "latest").read_text().strip() == "step-0000000002"
    assert restore(root)["w"].tolist() == [1.0, 1.0, 1.0]


def test_a_save_of_another_pid_namespace_is_never_taken_for_a_dead_one(tmp_path: Path) -> None:
    """A save in a container or a job's own PID namespace names a pid no other namespace can look up: a
    prune or save there removed it as abandoned while it was being written. It is kept while a process
    of its namespace lives (seen from the initial namespace as root), and abandoned once none does."""
    import shutil
    import socket
    import time

    from fabric_hpc.checkpoint import health
    from tests.real import require_real

    root = tmp_path / "ck"
    save(root, {"w": np.zeros(3)}, step=1)
    ns = os.stat("/proc/self/ns/pid").st_ino
    assert health.writer_host() == f"{socket.gethostname()}@{ns}"
    dead = 2**22 + 17  # above pid_max's default: no such process here
    mine = root / f".tmp-step-0000000003-{socket.gethostname()}@{ns}-{dead}-0123abcd"
    mine.mkdir()
    assert {lo.path.name: lo.state for lo in health.leftovers(root)}[mine.name] == "abandoned"
    require_real("unshare", shutil.which("unshare") is not None and os.geteuid() == 0
                 and ns == health.INIT_PID_NAMESPACE, "a PID namespace of its own needs root and unshare")
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "60"])
    try:
        for _ in range(100):  # the forked sleep, in the new namespace
            inner = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == child.pid]
            if inner:
                break
            time.sleep(0.05)
        other_ns = os.stat(f"/proc/{inner[0]}/ns/pid").st_ino
        other = root / f".tmp-step-0000000002-{socket.gethostname()}@{other_ns}-{dead}-0123abcd"
        other.mkdir()
        assert {lo.path.name: lo.state for lo in health.leftovers(root)}[other.name] == "unknown writer"
    finally:
        child.kill()
        child.wait()
    for _ in range(100):  # the namespace's last process reaped
        if {lo.path.name: lo.state for lo in health.leftovers(root)}[other.name] == "abandoned":
            break
        time.sleep(0.05)
    assert {lo.path.name: lo.state for lo in health.leftovers(root)}[other.name] == "abandoned"


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_only_a_later_step_of_the_same_store_supersedes_a_failed_drain(tmp_path: Path, monkeypatch) -> None:
    """A later step this store got committed makes an earlier step's failed drain moot; another run's newer
    step on the shared tier does not (its close() returned normally with step 5 only on local disk)."""
    shared = tmp_path / "shared"
    save(shared, {"w": np.zeros(3)}, step=1000)  # an earlier run's
    real, failing = tiers.drain, [5, 6]

    def drain_failing(part, root):
        if part.step in failing:
            failing.remove(part.step)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(part, root)

    monkeypatch.setattr(tiers, "drain", drain_failing)
    with pytest.raises(OSError, match="No space left"):
        with tiers.TieredStore(tmp_path / "local", shared) as store:
            store.save({"w": np.ones(3)}, step=5)
    with tiers.TieredStore(tmp_path / "local2", shared) as store:  # step 6 fails, step 7 is committed
        store.save({"w": np.ones(3)}, step=6)
        store.save({"w": np.ones(3)}, step=7)
    assert [r.step for r in list_checkpoints(shared)] == [7, 1000]


def test_a_namespace_is_never_called_gone_but_by_root(monkeypatch) -> None:
    """Without root, /proc may hide other users' processes (hidepid=2): their namespaces read as gone."""
    from fabric_hpc.checkpoint import health

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert health._namespace_gone(7) is False
