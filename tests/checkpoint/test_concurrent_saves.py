"""Two saves into one root at once (a second job, or an async save in flight and a sync save):
the later save's cleanup removed the earlier one's live temporary directory, and the earlier save
failed. A save removes only leftovers whose writer is gone (as prune does)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint import AsyncSaver, restore, save
from fabric_hpc.checkpoint.store import list_checkpoints

REPO = Path(__file__).resolve().parents[2]

# a save whose chunks are written, then waits (after creating READY) until GO exists, then commits
_HELD = """
import os, sys, time
import numpy as np
from fabric_hpc.checkpoint import save
root, ready, go = sys.argv[1:4]
def hold():
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
r = save(root, {"w": np.full(1000, 1.0)}, step=1, _after_chunks=hold)
print("OK", r.cleaned)
"""


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        threading.Event().wait(0.01)


def test_a_save_by_another_process_does_not_remove_a_live_save(tmp_path: Path) -> None:
    root, ready, go = tmp_path / "ck", tmp_path / "ready", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-c", _HELD, str(root), str(ready), str(go)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, first)
        second = save(root, {"w": np.full(3, 2.0)}, step=2)  # another process (this one) meanwhile
        assert second.cleaned == []
    finally:
        go.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0 and out.startswith("OK []"), err
    assert [r.step for r in list_checkpoints(root)] == [1, 2]
    assert float(restore(root, step=1)["w"][0]) == 1.0
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]


def test_a_dead_writers_leftover_is_still_removed_by_the_next_save(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    save(root, {"w": np.ones(2)}, step=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    import socket
    left = root / f".tmp-step-0000000002-{socket.gethostname()}-{dead.stdout.strip()}-0123abcd"
    (left / "w").mkdir(parents=True)
    assert save(root, {"w": np.ones(2)}, step=3).cleaned == [left.name]
    assert not left.exists()


def test_an_async_save_in_flight_survives_a_sync_save(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    in_flight, go = threading.Event(), threading.Event()

    def hold() -> None:
        in_flight.set()
        assert go.wait(60)

    with AsyncSaver(root) as saver:
        handle = saver.save({"w": np.full(1000, 1.0)}, step=100, _after_chunks=hold)
        assert in_flight.wait(60)
        try:
            sync = save(root, {"w": np.full(2, 2.0)}, step=101, tags=["preempted"])
        finally:
            go.set()
        assert sync.cleaned == []
        assert handle.wait(60).step == 100
    assert [r.step for r in list_checkpoints(root)] == [100, 101]
    assert float(restore(root, step=100)["w"][-1]) == 1.0


_TIERED_KILLED = """
import os, sys
import numpy as np
from fabric_hpc.checkpoint import tiers
real = tiers.write_pieces
def die(*a, **k):
    real(*a, **k)
    os._exit(9)  # killed after writing its chunks, before the commit
tiers.write_pieces = die
tiers.save_local(sys.argv[1], {"w": np.ones(4)}, step=5)
"""


def test_a_killed_tiered_saves_leftover_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    """A tiered save's temporary directory names its writer too, so the next save can tell."""
    from fabric_hpc.checkpoint.health import leftovers
    from fabric_hpc.checkpoint.tiers import save_local
    local = tmp_path / "local"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _TIERED_KILLED, str(local)], env=env, capture_output=True)
    assert run.returncode == 9, run.stderr
    [left] = leftovers(local)
    assert left.state == "abandoned" and left.pid is not None
    save_local(local, {"w": np.ones(4)}, step=6)
    assert not left.path.exists() and [r.step for r in list_checkpoints(local)] == [6]
