"""Fixes from a cluster-admin probe of ``fabric ckpt`` (real files, real commands through main())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from tests.checkpoint.builders import run_cli


def _steps(root: Path, steps: range | list[int]) -> Path:
    for s in steps:
        save(root, {"model": {"w": np.full(4, s, np.float32)}, "b": np.ones(2)}, step=s)
    return root


def test_restore_rerun_with_a_0d_tensor_keeps_the_same_reshard(tmp_path: Path, capsys) -> None:
    save(tmp_path / "ck", {"optim": {"step": np.int64(5)}, "w": np.ones(3, np.float32)}, step=1)
    args = ("ckpt", "restore", str(tmp_path / "ck"), "--to-world-size", "2", "--out", str(tmp_path / "o"))
    assert run_cli(capsys, *args)[0] == 0
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "already holds this reshard" in out, err
