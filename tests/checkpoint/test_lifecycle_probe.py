"""Life-cycle probes of a training job's checkpoints (a prober killing, filling and racing saves):
a full disk at every point of a save, seen from a real tmpfs with a small inode table."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

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
