"""Life-cycle probes of a training job's checkpoints (a prober killing, filling and racing saves):
a full disk at every point of a save, seen from a real tmpfs with a small inode table."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

#: save step 1, then step 2 with k = 0, 1, ... inodes left free until it fits: one line per try
_FILL = """
import json, os, sys
import numpy as np
from fabric_hpc.checkpoint import restore, save
from fabric_hpc.errors import FabricError
mnt = sys.argv[1]; root = os.path.join(mnt, "ck"); fill = os.path.join(mnt, "fill")
state = {"w": np.ones(2), "m": {"b": np.zeros(3)}}
save(root, state, step=1)
os.mkdir(fill)
for k in range(40):
    for f in os.listdir(fill):
        os.unlink(os.path.join(fill, f))
    n = 0
    while os.statvfs(mnt).f_favail > k:
        open(os.path.join(fill, str(n)), "w").close()
        n += 1
    try:
        save(root, state, step=2)
        out = "saved"
    except FabricError as e:
        out = f"{type(e).__name__}: {e.message} | fix: {e.hint}"
    except Exception as e:
        out = f"RAW {type(e).__name__}: {e}"
    restored = int(restore(root, names=["w"])["w"].size)
    print(json.dumps({"k": k, "out": out, "entries": sorted(os.listdir(root)), "restored": restored,
                      "latest": open(os.path.join(root, "latest")).read().strip()}), flush=True)
    if out == "saved":
        break
"""


def test_a_full_disk_at_any_point_of_a_save_fails_it_whole_with_a_clear_error(tmp_path: Path) -> None:
    """ENOSPC while writing `latest` (after the step directory was renamed into place) was a raw
    OSError about `latest`, and left step 2 committed while `latest` named step 1: the resumed job
    restored step 1 and its save of step 2 was refused ("already exists")."""
    from tests.checkpoint.test_probe_fixes import _unshare
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    py = f"PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -c {shlex.quote(_FILL)}"
    script = f"mount -t tmpfs -o size=4m,nr_inodes=200 tmpfs {mnt} && {py} {mnt}"
    proc = subprocess.run([*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tries = [json.loads(line) for line in proc.stdout.splitlines()]
    *failed, last = tries
    assert last["out"] == "saved" and last["latest"] == "step-0000000002" and len(failed) >= 5
    for t in failed:  # every failure: one clear error, nothing committed, step 1 still what restores
        assert t["out"].startswith("CheckpointIOError: cannot "), t
        assert "No space left on device" in t["out"] and "fix: free disk space" in t["out"], t
        assert t["entries"] == [".lock", "latest", "step-0000000001"], t
        assert t["latest"] == "step-0000000001" and t["restored"] == 2, t
    assert "(file latest)" in failed[-1]["out"], failed[-1]


#: save step 1, then step 2 and die by SIGKILL right after its directory was renamed into place,
#: before ``latest`` is replaced (the moment a preemption's SIGKILL or a node failure can hit)
_KILLED_IN_COMMIT = """
import os, signal, sys
import numpy as np
from fabric_hpc.checkpoint import save
root = sys.argv[1]
save(root, {"w": np.full(3, 1.0), "step": 1}, step=1)
real = os.replace
def replace(src, dst, *a, **k):
    if os.path.basename(dst) == "latest":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **k)
os.replace = replace
save(root, {"w": np.full(3, 2.0), "step": 2}, step=2)
"""


def test_a_save_killed_between_its_rename_and_latest_is_what_the_job_resumes_from(tmp_path: Path) -> None:
    """Killed there (about 1 in 10 random SIGKILLs of a job saving in a loop), step 2 was committed
    while `latest` named step 1: the requeued job restored step 1, trained, and its save of step 2
    was refused ("checkpoint for step 2 already exists")."""
    from fabric_hpc.checkpoint import list_checkpoints, restore, save
    from fabric_hpc.checkpoint.store import read_latest
    root = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", _KILLED_IN_COMMIT, str(root)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9, proc.stderr
    assert [r.step for r in list_checkpoints(root)] == [1, 2]
    assert (root / "latest").read_text().strip() == "step-0000000001"  # the kill's moment
    assert [n for n in os.listdir(root) if n.startswith(".latest")]  # the pointer it was about to move
    back = restore(root)  # the requeued job
    assert back["step"] == 2 and float(back["w"][0]) == 2.0
    listed = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "ckpt", "list", str(root), "--json"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert [r["step"] for r in json.loads(listed.stdout) if r["latest"]] == [2], listed.stdout
    res = save(root, {"w": np.full(3, 3.0), "step": 3}, step=back["step"] + 1)
    assert read_latest(root) == res.path.name == "step-0000000003"
    assert (root / "latest").read_text().strip() == "step-0000000003"
    assert not [n for n in os.listdir(root) if n.startswith((".latest", ".tmp-"))]


def test_a_hand_edited_latest_after_such_a_kill_wins_over_the_leftover(tmp_path: Path) -> None:
    """Review: the user then chose the step to resume from (``echo step-0000000001 > latest``, as the
    damaged-latest fix says); the leftover pointer overrode it and the next save wrote it into
    ``latest``. A ``latest`` newer than the leftover wins."""
    from fabric_hpc.checkpoint import restore
    from fabric_hpc.checkpoint.store import read_latest
    root = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", _KILLED_IN_COMMIT, str(root)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9, proc.stderr
    leftover = next(root / n for n in os.listdir(root) if n.startswith(".latest"))
    assert read_latest(root) == "step-0000000002"
    (root / "latest").write_text("step-0000000001\n")
    os.utime(leftover, ns=(1, 1))  # written before the edit, whatever the file system's clock grain
    assert read_latest(root) == "step-0000000001" and restore(root)["step"] == 1


def _save_forever(root: Path) -> None:
    from fabric_hpc.checkpoint import save
    from fabric_hpc.checkpoint.store import list_checkpoints
    try:
        refs = list_checkpoints(root) if root.exists() else []
        step = refs[-1].step + 1 if refs else 0
        while True:
            save(root, {"w": np.full(100, float(step))}, step=step, threads=1)
            step += 1
    finally:
        os._exit(0)


def test_after_any_kill_the_newest_committed_step_is_the_one_restored(tmp_path: Path) -> None:
    """SIGKILL at random moments of a job saving in a loop: what `restore()` resumes from is the
    newest committed step every time (before: `latest` lagged one step behind after 16 of 150 kills)."""
    from fabric_hpc.checkpoint import list_checkpoints, restore
    rng = random.Random(7)
    root = tmp_path / "ck"
    for trial in range(60):
        pid = os.fork()
        if pid == 0:
            _save_forever(root)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        refs = list_checkpoints(root) if root.exists() else []
        if refs:
            assert restore(root)["w"][0] == refs[-1].step, f"trial {trial}: resumed from an older step"


_OVER_FSIZE = """
import resource, sys
import numpy as np
from fabric_hpc.checkpoint import AsyncSaver, restore, save
from fabric_hpc.errors import FabricError
root = sys.argv[1]
save(root, {"w": np.ones(100)}, step=1)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))  # `ulimit -f 64` in a job script
try:
    save(root, {"w": np.ones(100_000)}, step=2)
except FabricError as e:
    print(type(e).__name__, e.message, "| fix:", e.hint)
with AsyncSaver(root) as saver:
    try:
        saver.save({"w": np.ones(100_000)}, step=3).wait()
    except FabricError as e:
        print(type(e).__name__, e.message, "| fix:", e.hint)
print(restore(root)["w"].size)
"""


def test_a_save_over_the_file_size_limit_names_the_limit_and_keeps_the_last_step(tmp_path: Path) -> None:
    """EFBIG (`ulimit -f` in a job script) said 'fix: check the filesystem: free space, permissions,
    mount options', none of which is the cause."""
    root = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", _OVER_FSIZE, str(root)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    *errors, restored = proc.stdout.splitlines()
    assert restored == "100" and len(errors) == 2, proc.stdout
    for line, step in zip(errors, (2, 3)):
        assert line.startswith(f"CheckpointIOError cannot write checkpoint step {step} in {root} "
                               "(file w/c.0): File too large | fix: the file is over this process's file "
                               "size limit"), line
        assert "ulimit -f" in line
    assert sorted(os.listdir(root)) == [".lock", "latest", "step-0000000001"]
