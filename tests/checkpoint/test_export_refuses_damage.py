"""The exports (HDF5, safetensors, DCP) refuse what `verify` calls DAMAGED in the step's structure,
as restore and reshard do (docs/checkpoint.md, "Containment": "restore and export raise
CheckpointCorruptError"): an array ``zarr.json`` that is a symlink out of the checkpoint, one whose
codecs differ from the manifest's, or a chunk file the manifest does not list was exported without a
word (only the chunk bytes were checked). Also: verify names a symlinked array ``zarr.json`` once.
Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, save, verify
from fabric_hpc.checkpoint.hdf5 import export_h5
from fabric_hpc.cli.main import main

STEP = "step-0000000005"


def _damage(root: Path, kind: str, outside: Path) -> None:
    arr = root / STEP / "model" / "w" / "zarr.json"
    if kind == "symlinked-array-meta":
        shutil.copy(arr, outside)  # the same bytes, outside the checkpoint
        arr.unlink()
        arr.symlink_to(outside)
    elif kind == "gzip-codec":
        doc = json.loads(arr.read_text())
        doc["codecs"].append({"name": "gzip", "configuration": {"level": 1}})
        arr.write_text(json.dumps(doc))
    else:  # a chunk the manifest does not list
        (arr.parent / "c.9.9").write_bytes(b"\0" * 48)


KINDS = ["symlinked-array-meta", "gzip-codec", "extra-chunk"]


@pytest.fixture
def damaged(tmp_path: Path, request) -> Path:
    root = tmp_path / "ck"
    save(root, {"model": {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4)}}, step=5)
    _damage(root, request.param, tmp_path / "outside.json")
    assert verify(root).problems
    return root


@pytest.mark.parametrize("damaged", KINDS, indirect=True)
def test_export_h5_refuses_a_damaged_step(damaged: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(CheckpointCorruptError, match="model/w"):
        export_h5(damaged, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
    assert main(["ckpt", "export", str(damaged), "--h5", str(tmp_path / "cli.h5")]) == 3
    assert "damaged" in capsys.readouterr().err and not (tmp_path / "cli.h5").exists()


@pytest.mark.parametrize("damaged", KINDS, indirect=True)
def test_export_hf_and_dcp_refuse_a_damaged_step(damaged: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from fabric_hpc.checkpoint.interop.dcp import export_dcp
    from fabric_hpc.checkpoint.interop.hf import export_hf
    with pytest.raises(CheckpointCorruptError, match="model/w"):
        export_hf(damaged, tmp_path / "hf")
    with pytest.raises(CheckpointCorruptError, match="model/w"):
        export_dcp(damaged, tmp_path / "dcp")
    assert not any(p.name in ("hf", "dcp") for p in tmp_path.iterdir())


def test_verify_names_a_symlinked_array_meta_once(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    save(root, {"model": {"w": np.zeros((3, 4), dtype=np.float32)}}, step=5)
    _damage(root, "symlinked-array-meta", tmp_path / "outside.json")
    problems = verify(root).problems
    named = [p for p in problems if "model/w/zarr.json" in p]
    assert named == ["model/w/zarr.json: is a symlink (not followed)"]
    assert os.path.islink(root / STEP / "model" / "w" / "zarr.json")
