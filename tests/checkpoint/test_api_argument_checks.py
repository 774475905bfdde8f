"""The checkpoint API's arguments are checked with CheckpointErrors that name the argument:
restore/open_checkpoint's ``step`` like save's (a string raised a format-code ValueError; True and
1.0 restored step 1), RetentionPolicy's counts, AsyncSaver's staging limit up front, and paths."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.checkpoint import AsyncSaver, RetentionPolicy, open_checkpoint, restore, save
from fabric_hpc.checkpoint.errors import CheckpointError


@pytest.fixture
def root(tmp_path):
    save(tmp_path / "ck", {"w": np.arange(4, dtype=np.float32)}, step=1)
    return tmp_path / "ck"


@pytest.mark.parametrize("step", ["1", True, 1.0, -1])
@pytest.mark.parametrize("opener", [lambda p, s: restore(p, step=s), open_checkpoint],
                         ids=["restore", "open"])
def test_bad_step_is_named(root, step, opener):
    with pytest.raises(CheckpointError, match="step must be a whole number"):
        opener(root, step)


def test_int_step_still_restores(root):
    assert restore(root, step=1)["w"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kw", [{"keep_last": "2"}, {"keep_last": 2.0}, {"keep_every": "10"}])
def test_retention_counts_must_be_whole(kw):
    with pytest.raises(CheckpointError, match="must be a whole number"):
        RetentionPolicy(**kw)


@pytest.mark.parametrize("limit", [-1, 0, "8G", 1.5])
def test_staging_limit_checked_when_the_saver_is_made(tmp_path, limit):
    with pytest.raises(CheckpointError, match="max_staging_bytes must be a whole number >= 1"):
        AsyncSaver(tmp_path / "ck", max_staging_bytes=limit)


@pytest.mark.parametrize("path", [None, 5])
def test_bad_path_is_named(path):
    with pytest.raises(CheckpointError, match="must be a directory path"):
        save(path, {"w": np.zeros(2)}, step=1)
    with pytest.raises(CheckpointError, match="must be a directory path"):
        restore(path)
