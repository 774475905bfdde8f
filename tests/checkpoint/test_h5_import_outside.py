"""``import --h5`` reads only data stored inside the HDF5 file: a dataset with external raw
storage, a link to another file, a soft link or a virtual dataset is refused before any read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from fabric_hpc.checkpoint.errors import CheckpointCorruptError
from fabric_hpc.checkpoint.hdf5 import export_h5, import_h5

h5py = pytest.importorskip("h5py")
W = np.arange(8, dtype=np.float32)


def _exported(tmp_path: Path) -> Path:
    save(tmp_path / "ck", {"model": {"w": W}, "b": np.ones(2)}, step=1)
    return export_h5(tmp_path / "ck", tmp_path / "x.h5")


def _replace_w(h5: Path, make) -> None:
    with h5py.File(h5, "r+") as f:
        attrs = dict(f["model/w"].attrs)
        del f["model/w"]
        make(f)
        if isinstance(f.get("model/w", getlink=True), h5py.HardLink):
            f["model/w"].attrs.update(attrs)


def _external_raw(tmp_path: Path, raw: Path):
    def make(f):
        f["model"].create_dataset("w", shape=W.shape, dtype=W.dtype, external=[(str(raw), 0, W.nbytes)])
    return make


def test_external_raw_storage_is_refused(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    raw = tmp_path / "outside.bin"
    raw.write_bytes(W.tobytes())  # the very bytes: without the check the import would succeed
    _replace_w(h5, _external_raw(tmp_path, raw))
    with pytest.raises(CheckpointCorruptError, match="outside the HDF5 file"):
        import_h5(h5, tmp_path / "imp")
    assert not (tmp_path / "imp").exists()


def test_external_link_is_refused(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["w"] = W
    _replace_w(h5, lambda f: f["model"].__setitem__("w", h5py.ExternalLink(str(other), "/w")))
    with pytest.raises(CheckpointCorruptError, match="outside the HDF5 file|link"):
        import_h5(h5, tmp_path / "imp")


def test_external_link_of_a_group_is_refused(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["model/w"] = W
    with h5py.File(h5, "r+") as f:
        del f["model"]
        f["model"] = h5py.ExternalLink(str(other), "/model")
    with pytest.raises(CheckpointCorruptError, match="link"):
        import_h5(h5, tmp_path / "imp")


def test_soft_link_is_refused(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    with h5py.File(h5, "r+") as f:
        f["elsewhere"] = W
    _replace_w(h5, lambda f: f["model"].__setitem__("w", h5py.SoftLink("/elsewhere")))
    with pytest.raises(CheckpointCorruptError, match="link"):
        import_h5(h5, tmp_path / "imp")


def test_virtual_dataset_is_refused(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["w"] = W

    def make(f):
        layout = h5py.VirtualLayout(shape=W.shape, dtype=W.dtype)
        layout[:] = h5py.VirtualSource(str(other), "w", shape=W.shape)
        f["model"].create_virtual_dataset("w", layout)
    _replace_w(h5, make)
    with pytest.raises(CheckpointCorruptError, match="outside the HDF5 file"):
        import_h5(h5, tmp_path / "imp")


_IMPORT = """
import sys
from fabric_hpc.cli.main import main
sys.exit(main(["ckpt", "import", "--h5", sys.argv[1], sys.argv[2]]))
"""


def test_external_storage_on_a_fifo_does_not_hang(tmp_path: Path) -> None:
    h5 = _exported(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _replace_w(h5, _external_raw(tmp_path, fifo))
    try:
        res = subprocess.run([sys.executable, "-c", _IMPORT, str(h5), str(tmp_path / "imp")],
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    except subprocess.TimeoutExpired:
        pytest.fail("import --h5 blocked reading a FIFO named as external storage")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    assert "outside the HDF5 file" in res.stderr and "Traceback" not in res.stderr, res.stderr
