"""A damaged ``part.json`` of a node-local tier (a crashed writer, a bad disk, an edit): listing and
resuming skip that part with a ``checkpoint.part_damaged`` warning event (its step cannot commit to
the shared tier from this node, and no restore ever used a part) and drain the good parts; draining
the damaged part itself raises CheckpointCorruptError naming the file and the fix. Never a raw
JSONDecodeError/KeyError/RecursionError, and never a path taken from the file outside the tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError
from fabric_hpc.checkpoint.tiers import LocalPart, TieredStore, drain, local_parts
from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = ROOT / ".venv" / "bin" / "mpiexec"
pytestmark = pytest.mark.mpi
STEP1 = "part-step-0000000001"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Steps 1 and 2 saved by 4 ranks on 2 "nodes" (real mpiexec), not drained."""
    require_real("mpi", MPIEXEC.exists(), f"{MPIEXEC} missing (pip install '.[mpi]')")
    root = tmp_path_factory.mktemp("parts")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(MPIEXEC), "-n", "4", sys.executable, "-m", "tests.checkpoint.mpi_worker", "tiered-parts",
           str(root), "1,2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def _info(part: Path) -> dict:
    return json.loads((part / "part.json").read_bytes())


def _write(value: object) -> Callable[[Path], None]:
    return lambda part: (part / "part.json").write_bytes(value if isinstance(value, bytes) else
                                                         json.dumps(value).encode())


def _edit(**changes: object) -> Callable[[Path], None]:
    return lambda part: _write({**_info(part), **changes})(part)


def _huge(part: Path) -> None:
    with open(part / "part.json", "r+b") as f:
        f.truncate(600 << 20)  # sparse: over the 512 MiB a part file may have


def _fifo(part: Path) -> None:
    (part / "part.json").unlink()
    os.mkfifo(part / "part.json")


DAMAGE = {
    "truncated": lambda part: (part / "part.json").write_bytes((part / "part.json").read_bytes()[:40]),
    "empty": _write(b""),
    "not-json": _write(b"\x00\xff garbage"),
    "nested": _write(b"[" * 100_000 + b"]" * 100_000),
    "not-object": _write([1, 2]),
    "no-token": lambda part: _write({k: v for k, v in _info(part).items() if k != "token"})(part),
    "step-str": _edit(step="1"),
    "other-step": _edit(step=2),
    "token-path": _edit(token="../../x"),
    "node-outside": _edit(node=2),
    "nodes-bool": _edit(nodes=True),
    "chunks-not-list": _edit(chunks={"a": 1}),
    "chunk-not-pair": _edit(chunks=[["model/embed"]]),
    "chunk-index-str": _edit(chunks=[["model/embed", ["0", "0"]]]),
    "chunk-outside-tier": _edit(chunks=[["../../../escaped", [0]]]),
    "chunk-not-in-manifest": _edit(chunks=[["model/embed", [7, 7]]]),
    "huge": _huge,
    "fifo": _fifo,
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, saved: Path, tmp_path: Path) -> tuple[Path, str]:
    shutil.copytree(saved, tmp_path / "c", symlinks=True)
    DAMAGE[request.param](tmp_path / "c" / "local-n0" / STEP1)
    return tmp_path / "c", request.param


def test_listing_skips_the_damaged_part_with_a_warning(damaged: tuple[Path, str], events: list[dict]) -> None:
    root, kind = damaged
    if kind == "chunk-not-in-manifest":  # found by the drain, which reads the manifest
        assert [p.step for p in local_parts(root / "local-n0")] == [1, 2]
        return
    assert [p.step for p in local_parts(root / "local-n0")] == [2]
    warned = [e for e in events if e["event"] == "checkpoint.part_damaged"]
    assert len(warned) == 1 and warned[0]["step"] == 1
    assert warned[0]["path"] == str(root / "local-n0" / STEP1 / "part.json")
    assert "cannot be drained" in warned[0]["fix"] and str(root / "local-n0" / STEP1) in warned[0]["fix"]


def test_draining_the_damaged_part_names_the_file_and_the_fix(damaged: tuple[Path, str]) -> None:
    root, kind = damaged
    part = LocalPart(root / "local-n0" / STEP1, 1, "0123456789ab", 0, 2)
    with pytest.raises(CheckpointCorruptError) as err:
        drain(part, root / "shared")
    assert str(part.path / "part.json") in err.value.message and "damaged" in err.value.message
    assert "delete" in (err.value.hint or "") and str(part.path) in (err.value.hint or "")
    assert not (root / "escaped").exists() and not (root / "shared" / "escaped").exists()
    assert [p.name for p in (root / "shared").iterdir() if not p.name.startswith(".")] == []  # nothing staged


def test_resume_drains_the_good_parts_and_keeps_the_damaged_one(damaged: tuple[Path, str],
                                                               events: list[dict]) -> None:
    root, kind = damaged
    if kind == "chunk-not-in-manifest":
        return  # listed as a part; its drain fails as in the test above (flush raises it)
    with TieredStore(root / "local-n1", root / "shared", node="n1") as n1:
        n1.flush()
    with TieredStore(root / "local-n0", root / "shared", node="n0") as n0:
        n0.flush()  # no error: step 2 drains and commits, the damaged step 1 is skipped
    assert n0.errors == [] and n1.errors == []
    assert sorted(p.name for p in (root / "shared").iterdir() if p.name.startswith("step-")) == \
        ["step-0000000002"]
    assert (root / "local-n0" / STEP1).is_dir()  # kept: never removed by the tier on its own
    assert any(e["event"] == "checkpoint.part_damaged" for e in events)
