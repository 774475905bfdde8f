"""Offline reshard (``fabric ckpt restore --to-world-size``) and HDF5 import stream one tensor at a
time: their peak memory is about the largest tensor, not the whole checkpoint; a tensor that does
not fit at all is a clear error (exit 5, naming the tensor, its size and the fix; JSON with --json)."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, open_checkpoint, save, verify
from fabric_hpc.checkpoint.reshard import reshard

ROOT = Path(__file__).resolve().parents[2]
TENSOR = 4 << 20  # bytes per tensor
COUNT = 8


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    rows = TENSOR // 4 // 256
    model = {f"l{i}": Shard.of(rng.standard_normal((rows, 256), dtype=np.float32), 0, 0, 1)
             for i in range(COUNT)}
    save(tmp_path / "ck", {"model": model, "opt": {"step": np.float32(7)}}, step=4, layout={"tp": 1},
         metadata={"lr": 0.1})
    return tmp_path / "ck"


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reshard_peak_is_about_one_tensor(ckpt: Path, tmp_path: Path) -> None:
    whole = open_checkpoint(ckpt).manifest.nbytes
    assert whole >= COUNT * TENSOR
    peak = _peak(lambda: reshard(ckpt, tmp_path / "out", 2))
    assert peak < 3 * TENSOR, f"reshard peaked at {peak:,} bytes, tensors of {TENSOR:,} ({whole:,} in all)"
    assert verify(tmp_path / "out").ok
    got = open_checkpoint(tmp_path / "out").manifest
    assert got.world_size == 2 and got.layout == {"tp": 1, "resharded_from": 1}
    assert all(e.split.mesh == [2] for n, e in got.tensors.items() if n.startswith("model/"))
    # the rerun compares tensor by tensor too (two copies of one tensor: the source's and the out's)
    peak = _peak(lambda: reshard(ckpt, tmp_path / "out", 2))
    assert peak < 4 * TENSOR


def test_h5_import_peak_is_about_one_tensor(ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from fabric_hpc.checkpoint.hdf5 import export_h5, import_h5
    export_h5(ckpt, tmp_path / "x.h5")
    peak = _peak(lambda: import_h5(tmp_path / "x.h5", tmp_path / "imp"))
    assert peak < 3 * TENSOR, f"import peaked at {peak:,} bytes"
    a, b = open_checkpoint(ckpt).manifest, open_checkpoint(tmp_path / "imp").manifest
    assert a.tensors == b.tensors and a.values == b.values and verify(tmp_path / "imp").ok


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 256 MiB tensor (written once for the module's tests)."""
    root = tmp_path_factory.mktemp("big") / "big"
    save(root, {"w": Shard.of(np.zeros((64 << 20,), np.float32), 0, 0, 1)}, step=1)
    return root


_LIMITED = """
import resource, sys
import fabric_hpc.checkpoint.reshard, fabric_hpc.cli.ckpt, fabric_hpc.cli.ckpt_interop
from fabric_hpc.cli.main import main
vm = int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmSize:')][0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (160 << 20), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


def test_tensor_over_the_memory_limit_is_a_clear_error(big: Path, tmp_path: Path) -> None:
    """One 256 MiB tensor under an address-space limit 160 MiB above the interpreter's: exit 5,
    JSON naming the tensor, its size and --mem (no numpy traceback)."""
    run = subprocess.run([sys.executable, "-c", _LIMITED, "ckpt", "restore", str(big),
                          "--to-world-size", "2", "--out", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 5, run.stderr
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    assert "'w'" in doc["error"] and "268,435,456 bytes" in doc["error"]
    assert "--mem" in doc["hint"]
    assert not (tmp_path / "out").exists()



def test_memory_error_anywhere_in_ckpt_cli_is_exit_5(big: Path, tmp_path: Path) -> None:
    """A MemoryError that no reader turned into its own error (``ckpt export --h5`` reads each tensor
    whole) still ends as the exit-5 error with the --mem fix, JSON with --json, no traceback."""
    pytest.importorskip("h5py")
    code = _LIMITED.replace("import resource, sys", "import resource, sys, h5py")
    run = subprocess.run([sys.executable, "-c", code, "ckpt", "export", str(big),
                          "--h5", str(tmp_path / "x.h5"), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 5, run.stderr
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    assert "ckpt export" in doc["error"] and "out of memory" in doc["error"] and "--mem" in doc["hint"]
