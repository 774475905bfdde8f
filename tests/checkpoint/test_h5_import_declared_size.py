"""`fabric ckpt import --h5` sized its memory by a dataset's declared shape (probe 7): a 6 KB file with a
never-written dataset of shape [4e9] (and a manifest that agrees) asked for 14.9 GiB; under ulimit -v it
died with numpy's raw _ArrayMemoryError traceback (exit 1). A dataset is now checked against what the file
stores for it before anything is allocated (all of it for a plain dataset, every chunk and at most a
deflate-like ratio for a filtered one); a refusal is exit 3 naming the dataset and the fix."""

from __future__ import annotations

import json
import math
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
ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _declaring(tmp_path: Path, shape: list[int], **create) -> Path:
    """An export of one float32 tensor ``x`` whose dataset (and manifest) declare ``shape``, created as
    ``create`` says and never written (a sparse dataset)."""
    save(tmp_path / "ck", {"x": np.arange(8, dtype=np.float32)}, step=1)
    src = export_h5(tmp_path / "ck", tmp_path / "src.h5")
    with h5py.File(src, "r") as f:
        meta = json.loads(f.attrs["fabric_checkpoint"])
        attrs = dict(f["x"].attrs)
    t = meta["tensors"]["x"]
    t["shape"], t["chunk_shape"] = shape, shape
    t["chunks"] = [{"index": [0] * len(shape), "nbytes": 4 * math.prod(shape), "crc32c": 0}]
    meta["nbytes"] = 4 * math.prod(shape)
    out = tmp_path / "declared.h5"
    with h5py.File(out, "w") as f:
        f.attrs["fabric_checkpoint"] = json.dumps(meta)
        ds = f.create_dataset("x", shape=tuple(shape), dtype="<f4", **create)
        ds.attrs.update({**attrs, "fabric_chunk_shape": json.dumps(shape)})
    return out


LAYOUTS = [{}, {"chunks": (1 << 16,)}, {"chunks": (1 << 16,), "compression": "gzip"}]


@pytest.mark.parametrize("create", LAYOUTS, ids=["contiguous", "chunked", "gzip"])
def test_a_never_written_huge_dataset_is_refused_before_any_allocation(tmp_path: Path, create) -> None:
    h5 = _declaring(tmp_path, [4_000_000_000], **create)
    assert h5.stat().st_size < 1 << 20
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from fabric_hpc.cli.main import main\nsys.exit(main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "ckpt", "import", "--h5", str(h5), str(tmp_path / "out")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    assert "dataset 'x' declares 16,000,000,000 bytes" in proc.stderr, proc.stderr
    assert "fabric ckpt export --h5" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_partly_written_chunked_dataset_is_refused(tmp_path: Path) -> None:
    h5 = _declaring(tmp_path, [1 << 20], chunks=(1 << 10,))
    with h5py.File(h5, "r+") as f:
        f["x"][:1 << 10] = 1.0  # one chunk of 1,024
    with pytest.raises(CheckpointCorruptError, match=r"stores 1 of its 1,024 chunks"):
        import_h5(h5, tmp_path / "out")


def test_fully_written_datasets_import_plain_chunked_or_compressed(tmp_path: Path) -> None:
    """Whole data is imported whatever its layout, also zeros gzip-compressed far below their size."""
    from fabric_hpc.checkpoint import open_checkpoint

    zeros = np.zeros(1 << 20, np.float32)
    for k, create in enumerate(({}, {"chunks": (1 << 14,)}, {"chunks": (1 << 16,), "compression": "gzip"})):
        d = tmp_path / str(k)
        save(d / "ck", {"x": zeros}, step=1)
        h5 = export_h5(d / "ck", d / "x.h5")
        with h5py.File(h5, "r+") as f:
            attrs = dict(f["x"].attrs)
            del f["x"]
            f.create_dataset("x", data=zeros, **create).attrs.update(attrs)
        import_h5(h5, d / "out")
        assert np.array_equal(open_checkpoint(d / "out").read("x"), zeros)


def test_a_stored_dataset_too_large_for_the_memory_limit_is_exit_5_not_a_traceback(tmp_path: Path) -> None:
    """Stored whole (gzip'd zeros) but larger than the process may allocate: the clear error naming the
    tensor, its size and the fix (more memory), exit 5 (a resource failure, as a full disk)."""
    n, step = 500_000_000, 1 << 16
    h5 = _declaring(tmp_path, [n], chunks=(step,), compression="gzip")
    block = np.zeros(step, np.float32)
    with h5py.File(h5, "r+") as f:
        for i in range(0, n, step):
            f["x"][i:i + step] = block[:min(step, n - i)]
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))\n"
            "from fabric_hpc.cli.main import main\nsys.exit(main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "ckpt", "import", "--h5", str(h5), str(tmp_path / "out")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 5, (proc.returncode, proc.stderr[-2000:])
    assert "tensor 'x' (2,000,000,000 bytes) does not fit in this process's memory" in proc.stderr, \
        proc.stderr[-2000:]
    assert "--mem" in proc.stderr
    assert "Traceback" not in proc.stderr
