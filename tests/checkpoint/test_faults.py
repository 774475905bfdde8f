"""Fault injection: SIGKILL a saving process at random moments, 100 times.

The child (forked from this already-warm interpreter, so a trial costs milliseconds) saves and
prunes in a loop; the parent kills it with SIGKILL after a random delay. After every kill, every
committed checkpoint must verify, ``latest`` must name a complete checkpoint whose data matches
its step, and the next save must clean up all leftovers.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import RetentionPolicy, list_checkpoints, open_checkpoint, prune, restore, save, verify
from fabric_hpc.checkpoint.store import read_latest

TRIALS = 100


def _state(step: int) -> dict:
    return {"model": {"w": np.full((64, 64), step, np.float32), "b": np.full(257, step, np.int64)},
            "opt": {"m": np.full((3, 100), step, np.float64)}}


def _child(root: Path, first_step: int) -> None:
    try:
        step = first_step
        while True:
            save(root, _state(step), step=step, threads=2)
            prune(root, RetentionPolicy(keep_last=2))
            step += 1
    finally:
        os._exit(0)


@pytest.mark.slow
def test_kill_minus_9_at_random_points_never_tears_latest(tmp_path: Path) -> None:
    rng = random.Random(1234)
    root = tmp_path / "ck"
    next_step = 1
    committed_before: set[int] = set()
    leftovers_seen = 0
    for trial in range(TRIALS):
        pid = os.fork()
        if pid == 0:
            _child(root, next_step)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0

        refs = list_checkpoints(root) if root.exists() else []
        for ref in refs:
            assert verify(ref.path).ok, f"trial {trial}: torn checkpoint {ref.path}"
        if refs:
            latest = read_latest(root)
            ck = open_checkpoint(root)
            assert latest is None or (root / latest).is_dir(), f"trial {trial}: dangling latest {latest}"
            got = restore(root)
            assert np.all(got["model"]["w"] == ck.step) and np.all(got["opt"]["m"] == ck.step)
            assert ck.step >= max(committed_before, default=0), "a committed checkpoint went backwards"
            committed_before.add(ck.step)
        leftovers_seen += sum(1 for p in root.iterdir() if p.name.startswith((".tmp-", ".trash-", ".latest"))) \
            if root.exists() else 0

        # the next save (here: in the parent) cleans up whatever the crash left behind
        next_step = (max((r.step for r in refs), default=0) + 1000)
        res = save(root, _state(next_step), step=next_step)
        assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".trash-", ".latest"))]
        assert read_latest(root) == res.path.name
        next_step += 1
    assert leftovers_seen > 0, "no kill landed mid-save: the test did not exercise anything"
