"""The tiered drain's commit moved the step into place first and ``latest`` after it (review): a full disk
while ``latest`` was written left the step committed and not named (restores skipped it, the retry was
refused "already exists"), with a raw OSError. It now commits as every save does
(``store.rename_into_place``): the failure comes before the rename, latest and the step agree, and the
next drain of that step commits it."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import store, tiers
from fabric_hpc.checkpoint.errors import CheckpointIOError


def test_a_full_disk_at_latest_fails_the_drain_whole_and_a_later_drain_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local, shared = tmp_path / "local", tmp_path / "shared"
    _, first = tiers.save_local(local, {"w": np.ones(2)}, step=1, shared=shared)
    tiers.drain(first, shared)
    _, second = tiers.save_local(local, {"w": np.full(2, 2.0)}, step=2, shared=shared)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(store, "_write_synced", full)
        with pytest.raises(CheckpointIOError, match="No space left"):
            tiers.drain(second, shared)
    assert (shared / "latest").read_text().strip() == "step-0000000001"
    assert not (shared / "step-0000000002").exists()  # nothing committed that latest does not name
    assert store.resolve(shared).path.name == "step-0000000001"
    done = tiers.drain(second, shared)  # space again: the local part drains afresh and commits
    assert done is not None and done.name == "step-0000000002"
    assert store.resolve(shared).path.name == "step-0000000002"
