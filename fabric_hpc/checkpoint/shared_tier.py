"""What a tiered save's shared root holds, read without changing it: the newest committed step across
tiers, and waiting until a step is committed there (:class:`~fabric_hpc.checkpoint.tiers.TieredStore`'s
``flush``, ``newest``), naming the nodes whose part has not arrived."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from fabric_hpc.checkpoint import store
from fabric_hpc.checkpoint.errors import CheckpointIOError, CheckpointNotFoundError
from fabric_hpc.checkpoint.format import MANIFEST

#: a drain's staging directory in the shared root: ``.drain-step-N-TOKEN``
DRAIN_DIR = re.compile(r"^\.drain-step-(\d{10})-[0-9a-f]+$")


def wait_committed(shared: Path, step: int, deadline: float | None, timeout: float | None) -> Path:
    """Poll until ``SHARED/step-N`` is committed (its manifest visible from this node), or a newer
    step is (a prune of the shared tier may have removed step N once step N+1 committed)."""
    final = shared / store.step_dir_name(step) / MANIFEST
    pause = 0.01
    while not final.exists():
        newer = _newest_step(shared)
        if newer is not None and newer > step:
            return shared / store.step_dir_name(newer)
        if deadline is not None and time.monotonic() >= deadline:
            raise CheckpointIOError(
                f"step {step} is not committed on the shared tier {shared} after {timeout:g} s"
                f"{_missing_nodes(shared, step)}",
                hint="a node that failed or died never commits the step: check every node's "
                     "flush() error (the shared tier keeps the previous step); or pass a longer flush(timeout=...)")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    return final.parent


def _newest_step(shared: Path) -> int | None:
    try:
        return newest_complete(shared).step
    except CheckpointNotFoundError:
        return None


def _missing_nodes(shared: Path, step: int) -> str:
    """``: node(s) ... have not drained`` from the staging directory's markers, when it exists."""
    for entry in os.scandir(shared) if shared.is_dir() else []:
        m = DRAIN_DIR.match(entry.name)
        if m and int(m.group(1)) == step:
            done = sorted(int(n.name[len(".node-"):]) for n in Path(entry.path).glob(".node-*"))
            return f" (nodes with their part drained: {done or 'none'}; staging in {entry.path})"
    return " (no node has drained it yet)"


def newest_complete(*roots: Path | str) -> store.CheckpointRef:
    """The newest committed checkpoint across tiers (first root wins a tie: the fast one)."""
    best: store.CheckpointRef | None = None
    for root in roots:
        try:
            refs = store.list_checkpoints(Path(root))
        except CheckpointNotFoundError:
            continue
        if refs and (best is None or refs[-1].step > best.step):
            best = refs[-1]
    if best is None:
        raise CheckpointNotFoundError(f"no committed checkpoint in any tier: {[str(r) for r in roots]}")
    return best
