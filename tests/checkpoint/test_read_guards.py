"""Reading checkpoints (review 26): verify beside a prune, casts that saturate or overflow, and a
tensor too large for memory behind a sparse chunk file.

* verify took no readers' lock: a prune (keep_last) beside ``verify --all`` removed the step being
  checked, which verify then called DAMAGED (exit 3, "restore an older step").
* ``into=`` an fp8 target (or ``read(dtype="float8_e4m3fn")``) turned 1e6 into 448 silently, although
  ``restore(dtype="float8_e4m3fn")`` is refused; a float16 target turned it into inf.
* a chunk file of 8 TiB (sparse) passed the size checks and restore/read died with numpy's MemoryError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import (
    CheckpointError, CheckpointNotFoundError, RetentionPolicy, open_checkpoint, prune, restore, save, verify,
)

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _two_steps(tmp_path: Path) -> Path:
    save(tmp_path / "ck", {"a": np.arange(1000.0), "b": np.arange(10.0), "d": np.arange(5.0)}, step=1)
    save(tmp_path / "ck", {"a": np.arange(3.0)}, step=2)
    return tmp_path / "ck"


def test_a_prune_beside_verify_skips_the_step_being_verified(tmp_path: Path) -> None:
    root = _two_steps(tmp_path)
    pruned = []

    def tick(_: int) -> None:
        if not pruned:
            pruned.append(prune(root, RetentionPolicy(keep_last=1)))

    report = verify(root / "step-0000000001", progress=tick, threads=1)
    assert report.ok, report.problems  # was: ['b/c.0: missing', 'd/c.0: missing']
    assert pruned[0].busy == [1] and pruned[0].removed == []
    assert prune(root, RetentionPolicy(keep_last=1)).removed == [1]  # once verify is done


def test_a_step_removed_during_verify_is_reported_removed_not_damaged(tmp_path: Path) -> None:
    root = _two_steps(tmp_path)
    step = root / "step-0000000001"

    def tick(_: int) -> None:  # a removal that takes no lock (rm -rf)
        if step.exists():
            step.rename(tmp_path / "gone")

    with pytest.raises(CheckpointNotFoundError, match="removed while it was being verified"):
        verify(step, progress=tick, threads=1)


def test_verify_all_reports_a_step_pruned_meanwhile_as_a_warning(tmp_path: Path) -> None:
    from fabric_hpc.cli.ckpt import _verify_one
    root = _two_steps(tmp_path)
    step = root / "step-0000000001"
    step.rename(tmp_path / "gone")  # listed by verify --all, pruned before its turn
    report = _verify_one(step, None, 1, None)
    assert report.ok and not report.damaged and "not verified" in report.warnings[0]
    with pytest.raises(CheckpointNotFoundError):
        _verify_one(step, None, None, None)  # one step named by the user: not found, as before


def test_an_fp8_target_or_dtype_is_refused_not_saturated(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    save(tmp_path / "ck", {"w": np.array([1.0, 500.0, 1e6], np.float32)}, step=1)
    target = torch.ones(3, dtype=torch.float8_e4m3fn)
    with pytest.raises(CheckpointError, match="w: the target's dtype float8_e4m3fn would saturate") as info:
        restore(tmp_path / "ck", into={"w": target})  # was: [1, 448, 448]
    assert "fabric ckpt convert" in info.value.hint
    assert torch.equal(target.float(), torch.ones(3))
    with pytest.raises(CheckpointError, match="w: the dtype float8_e5m2 would saturate"):
        open_checkpoint(tmp_path / "ck").read("w", dtype="float8_e5m2")
    fp8 = torch.tensor([1.0, 448.0]).to(torch.float8_e4m3fn)
    save(tmp_path / "f8", {"q": fp8}, step=1)  # stored fp8 into fp8: no cast, still fine
    assert torch.equal(restore(tmp_path / "f8", into={"q": torch.zeros(2, dtype=torch.float8_e4m3fn)})["q"]
                       .float(), fp8.float())


@pytest.mark.parametrize("as_torch", [False, True])
def test_values_overflowing_a_narrower_float_target_are_refused(tmp_path: Path, as_torch: bool) -> None:
    save(tmp_path / "ck", {"w": np.array([1.0, 500.0, 1e6], np.float32), "s": np.array([1.0, 2.0])}, step=1)
    if as_torch:
        torch = pytest.importorskip("torch")
        target = torch.zeros(3, dtype=torch.float16)
    else:
        target = np.zeros(3, np.float16)
    with pytest.raises(CheckpointError, match=r"w: 1 stored float32 value\(s\) overflow float16"):
        restore(tmp_path / "ck", into={"w": target})  # was: [1, 500, inf]
    assert not target.any()
    with pytest.raises(CheckpointError, match="overflow float16"):
        restore(tmp_path / "ck", dtype="float16")
    with pytest.raises(CheckpointError, match="overflow float16"):
        open_checkpoint(tmp_path / "ck").read("w", dtype="float16", as_torch=as_torch)
    assert restore(tmp_path / "ck", names=["s"], dtype="float16")["s"].tolist() == [1.0, 2.0]
    inf = np.array([1.0, np.inf, -np.inf, np.nan], np.float32)  # stored inf stays inf: no overflow
    save(tmp_path / "ck", {"w": inf}, step=2)
    got = restore(tmp_path / "ck", into={"w": np.zeros(4, np.float16)})["w"]
    assert np.array_equal(got, inf.astype(np.float16), equal_nan=True)


def test_a_sparse_chunk_file_too_large_for_memory_is_a_clear_error(tmp_path: Path) -> None:
    n = 1 << 37  # 1 TiB of float64 behind a sparse chunk file of that size
    save(tmp_path / "ck", {"w": np.arange(4.0)}, step=1)
    step = tmp_path / "ck" / "step-0000000001"
    doc = json.loads((step / "zarr.json").read_text())
    t = doc["attributes"]["fabric_checkpoint"]["tensors"]["w"]
    t.update(shape=[n], chunk_shape=[n], chunks=[{"index": [0], "nbytes": 8 * n, "crc32c": 0}])
    doc["attributes"]["fabric_checkpoint"]["nbytes"] = 8 * n
    array = json.loads((step / "w" / "zarr.json").read_text())
    array["shape"] = array["chunk_grid"]["configuration"]["chunk_shape"] = [n]
    for rel, d in (("zarr.json", doc), ("w/zarr.json", array)):
        (step / rel).chmod(0o600)
        (step / rel).write_text(json.dumps(d))
    (step / "w" / "c.0").chmod(0o600)
    os.truncate(step / "w" / "c.0", 8 * n)
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from fabric_hpc.checkpoint import open_checkpoint, restore\n"
            "for f in (lambda: restore(sys.argv[1]), lambda: open_checkpoint(sys.argv[1]).read('w')):\n"
            "    try:\n        f()\n    except Exception as e:\n        print(type(e).__name__, e.args[0])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ck")], capture_output=True, text=True,
                          timeout=120, env=ENV)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr[-2000:])
    want = f"CheckpointMemoryError tensor 'w' ({8 * n:,} bytes) does not fit in this process's memory"
    assert all(line.startswith(want) for line in lines), lines
