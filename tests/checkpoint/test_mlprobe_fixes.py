"""What an ML engineer new to fabric met (probe, 2026-12-07), each pinned by a test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import list_checkpoints, restore, save
from tests.checkpoint.builders import run_cli


def test_import_into_a_root_holding_the_step_has_a_fix_the_command_can_follow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "fix: save under a new step", and `fabric ckpt import` took no --step."""
    save(tmp_path / "ck", {"w": np.arange(6.0)}, step=5)
    assert run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5", str(tmp_path / "ck.h5"))[0] == 0
    code, _, err = run_cli(capsys, "ckpt", "import", "--h5", str(tmp_path / "ck.h5"), str(tmp_path / "ck"))
    assert code == 3 and "already exists" in err and "--step" in err, err
    code, _, err = run_cli(capsys, "ckpt", "import", "--h5", str(tmp_path / "ck.h5"), str(tmp_path / "ck"),
                           "--step", "6")
    assert code == 0, err
    assert [c.step for c in list_checkpoints(tmp_path / "ck")] == [5, 6]
    assert np.array_equal(restore(tmp_path / "ck", step=6)["w"], np.arange(6.0))
