"""A tiered save's staging directory in the shared root (``.drain-step-N-TOKEN``) is a known
leftover: listed, kept while a drainer lives, pruned once every drainer is gone (kill -9) or a
newer step committed, and it makes its directory a checkpoint root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint import health, save
from tests.checkpoint.builders import run_cli

_DRAIN = """
import sys, time
import numpy as np
from fabric_hpc.checkpoint import tiers
local, shared = sys.argv[1], sys.argv[2]
_, part = tiers.save_local(local, {"w": np.ones(64, np.float32), "b": np.zeros(3)}, step=7)
def stuck(src, dst):  # a drain slowed down for ever mid-copy (a hung filesystem, a huge file)
    open(dst, "wb").close()
    time.sleep(3600)
tiers._copy_file = stuck
tiers.drain(part, shared)
"""


def _start_drain(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    shared = tmp_path / "shared"
    proc = subprocess.Popen([sys.executable, "-c", _DRAIN, str(tmp_path / "local"), str(shared)],
                            cwd=Path(__file__).parents[2])
    for _ in range(600):  # until the drainer recorded itself (or the process died)
        staging = list(shared.glob(".drain-step-0000000007-*")) if shared.is_dir() else []
        if staging and (staging[0] / ".drainer-0").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the drain process died"
    return proc, staging[0]


def test_killed_drain_is_listed_kept_while_alive_then_pruned(tmp_path: Path, capsys) -> None:
    proc, staging = _start_drain(tmp_path)
    shared = staging.parent
    try:
        assert [lo.state for lo in health.leftovers(shared)] == ["in progress"]
        code, out, err = run_cli(capsys, "ckpt", "list", str(shared))
        assert code == 0 and str(staging) in out and "in progress" in out, (code, out, err)
        code, out, err = run_cli(capsys, "ckpt", "verify", "--all", str(shared))
        assert code == 0 and "not a checkpoint root" not in out + err, (code, out, err)
        code, out, err = run_cli(capsys, "ckpt", "prune", str(shared), "--keep-last", "1")
        assert code == 0 and "not a checkpoint root" not in out + err, (code, out, err)
        assert staging.is_dir(), "a live drain's staging directory was removed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [lo.state for lo in health.leftovers(shared)] == ["abandoned"]
    code, out, err = run_cli(capsys, "ckpt", "list", str(shared))
    assert code == 0 and "abandoned" in out, (code, out, err)
    code, out, err = run_cli(capsys, "ckpt", "prune", str(shared), "--keep-last", "1", "--dry-run")
    assert code == 0 and staging.is_dir(), (code, out, err)
    code, out, err = run_cli(capsys, "ckpt", "prune", str(shared), "--keep-last", "1")
    assert code == 0 and str(staging) in out, (code, out, err)
    assert not staging.exists()


def test_staging_of_an_older_version_is_kept_and_one_below_a_committed_step_is_pruned(
        tmp_path: Path, capsys) -> None:
    shared = tmp_path / "shared"
    old = shared / ".drain-step-0000000009-abcdef012345"  # no drainer records: who writes it is unknown
    old.mkdir(parents=True)
    (old / "w").mkdir()
    code, out, err = run_cli(capsys, "ckpt", "list", str(shared))
    assert code == 0 and "writer unknown" in out, (code, out, err)
    stale = shared / ".drain-step-0000000004-0123456789ab"  # step 5 is committed: it can never commit
    stale.mkdir()
    save(shared, {"w": np.ones(2)}, step=5)
    assert {lo.path.name: lo.state for lo in health.leftovers(shared)} == {
        old.name: "unknown writer", stale.name: "abandoned"}
    code, out, err = run_cli(capsys, "ckpt", "prune", str(shared), "--keep-last", "1")
    assert code == 0 and old.is_dir() and not stale.exists(), (code, out, err)
