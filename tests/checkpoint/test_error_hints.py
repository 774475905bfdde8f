"""Errors that named the problem but gave no fix: export-hf of a complex tensor, read regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, save
from fabric_hpc.checkpoint.reader import open_checkpoint
from tests.checkpoint.builders import run_cli


def test_export_hf_of_a_complex_tensor_says_how_and_writes_nothing(tmp_path: Path, capsys) -> None:
    save(tmp_path / "ck", {"z": np.zeros(2, np.complex64), "w": np.ones(2, np.float32)}, step=1)
    code, _, err = run_cli(capsys, "ckpt", "export-hf", str(tmp_path / "ck"), str(tmp_path / "out"))
    assert code == 3 and "z: dtype complex64 has no safetensors name" in err, err
    assert "fix: save it as real and imaginary parts (torch.view_as_real" in err
    assert not (tmp_path / "out").exists()


def test_read_region_errors_give_a_fix(tmp_path: Path) -> None:
    save(tmp_path / "ck", {"w": np.ones((4, 8), np.float32)}, step=1)
    ckpt = open_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="outside shape") as info:
        ckpt.read("w", region=((0, 5), (0, 8)))
    assert info.value.hint and "((0, 4), (0, 8))" in info.value.hint
    with pytest.raises(CheckpointError, match="target shape") as info:
        ckpt.read("w", region=((0, 2), (0, 8)), out=np.empty((2, 4), np.float32))
    assert info.value.hint and "(2, 8)" in info.value.hint
