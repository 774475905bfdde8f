"""``fabric ckpt``: every command end to end through main() (exit codes, --json, no tracebacks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, list_checkpoints, open_checkpoint, restore, save
from fabric_hpc.cli.main import main
from tests.checkpoint.builders import run_cli


_run = run_cli  # (exit code, stdout, stderr) of fabric ARGS


@pytest.fixture
def root(tmp_path: Path) -> Path:
    w = np.arange(40, dtype=np.float32).reshape(10, 4)
    for step in (1, 2, 3):
        save(tmp_path / "ck", {"model": {"w": Shard.of(w, 0, 0, 1)}, "b": np.full(3, step)}, step=step,
             tags=["best"] if step == 1 else [])
    return tmp_path / "ck"


def test_list_show_verify(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ckpt", "list", str(root), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["latest"] and rows[0]["tags"] == ["best"]
    code, out, _ = _run(capsys, "ckpt", "list", str(root))
    assert code == 0 and "step" in out and "best" in out
    code, out, _ = _run(capsys, "ckpt", "show", str(root), "--json")
    data = json.loads(out)
    assert code == 0 and data["step"] == 3 and data["tensors"]["model/w"]["shape"] == [10, 4]
    code, out, _ = _run(capsys, "ckpt", "show", str(root), "--step", "2")
    assert code == 0 and "model/w" in out and "float32" in out
    code, out, _ = _run(capsys, "ckpt", "verify", str(root), "--all", "--json")
    assert code == 0 and all(r["ok"] for r in json.loads(out))


def test_list_shows_a_step_directory_without_manifest(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "step-0000000002" / "zarr.json").unlink()  # a partial copy: listed as damaged, not hidden
    code, out, _ = _run(capsys, "ckpt", "list", str(root), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["damaged"] and "zarr.json missing" in rows[1]["error"] and "damaged" not in rows[0]
    code, out, _ = _run(capsys, "ckpt", "list", str(root))
    assert code == 0 and "DAMAGED" in out


def test_list_says_when_latest_names_a_step_that_is_gone(root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A `latest` naming a step removed by hand was listed without a word, while restore silently takes
    the newest committed step: list now says so on stderr, with the fix (as verify does)."""
    import shutil
    (root / "latest").write_text("step-0000000009\n")
    shutil.rmtree(root / "step-0000000003")
    for extra in ((), ("--json",)):
        code, out, err = _run(capsys, "ckpt", "list", str(root), *extra)
        assert code == 0 and "names step-0000000009, which is missing" in err and "step-0000000002" in err
    assert [r["latest"] for r in json.loads(out)] == [False, False]


def test_prune_lists_a_step_directory_without_manifest_as_damaged(root: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A step directory with no manifest (a partial copy) was kept but listed nowhere ("damaged": [])."""
    (root / "step-0000000002" / "zarr.json").unlink()
    code, out, _ = _run(capsys, "ckpt", "prune", str(root), "--keep-last", "1", "--json")
    data = json.loads(out)
    assert code == 0 and data["damaged"] == [2] and 2 in data["kept"] and data["removed"] == []
    assert (root / "step-0000000002").is_dir()
    code, out, _ = _run(capsys, "ckpt", "prune", str(root), "--keep-last", "1")
    assert code == 0 and "DAMAGED" in out and "[2]" in out


def test_verify_damaged_exits_3_naming_the_chunk(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chunk = open_checkpoint(root).path / "model" / "w" / "c.0.0"
    chunk.write_bytes(b"\0" * chunk.stat().st_size)
    code, out, err = _run(capsys, "ckpt", "verify", str(root))
    assert code == 3 and "model/w/c.0.0: checksum mismatch" in out and "damaged" in err
    assert "Traceback" not in err and "fix:" in err


def test_restore_to_world_size_prune_export_import(root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ckpt", "restore", str(root), "--to-world-size", "4",
                        "--out", str(tmp_path / "r4"), "--json")
    assert code == 0 and json.loads(out)["world_size"] == 4
    assert len(open_checkpoint(tmp_path / "r4").entry("model/w").chunks) == 4
    assert np.array_equal(restore(tmp_path / "r4", rank=3, world_size=4)["model"]["w"],
                          np.arange(40, dtype=np.float32).reshape(10, 4)[9:])
    code, out, _ = _run(capsys, "ckpt", "export", str(root), "--h5", str(tmp_path / "x.h5"), "--json")
    assert code == 0 and (tmp_path / "x.h5").is_file()
    code, out, _ = _run(capsys, "ckpt", "import", "--h5", str(tmp_path / "x.h5"), str(tmp_path / "imp"))
    assert code == 0 and open_checkpoint(tmp_path / "imp").manifest == open_checkpoint(root).manifest
    code, out, _ = _run(capsys, "ckpt", "prune", str(root), "--keep-last", "1", "--json")
    assert code == 0 and json.loads(out)["removed"] == [2]  # 1 is tagged
    assert [r.step for r in list_checkpoints(root)] == [1, 3]


@pytest.mark.parametrize("args,needle", [
    (["ckpt", "list", "/nonexistent/ck"], "no checkpoint directory"),
    (["ckpt", "show", "{root}", "--step", "99"], "no checkpoint for step 99"),
    (["ckpt", "import", "--h5", "/nonexistent.h5", "{root}"], "no HDF5 file"),
])
def test_user_mistakes_are_clean_errors(root: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                        needle: str) -> None:
    code, _, err = _run(capsys, *[a.replace("{root}", str(root)) for a in args])
    assert code == 3 and needle in err and "Traceback" not in err


def test_bad_flag_value_is_usage_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ckpt", "prune", str(root), "--keep-last", "0")
    assert code == 2 and "keep-last" in err


def test_mesh_split_reshard_show_and_bad_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.checkpoint.format import SplitInfo
    x = np.arange(9 * 10, dtype=np.float64).reshape(9, 10)
    save(tmp_path / "a", {"x": x, "v": np.ones(4)}, step=1, splits={"x": SplitInfo.of([1, 0], [2, 3])})
    assert open_checkpoint(tmp_path / "a").manifest.format_version == 2
    code, out, _ = _run(capsys, "ckpt", "show", str(tmp_path / "a"))
    assert code == 0 and "dims 1,0 / 2x3" in out
    code, out, _ = _run(capsys, "ckpt", "restore", str(tmp_path / "a"), "--to-world-size", "8", "--mesh", "4x2",
                        "--out", str(tmp_path / "b"), "--json")
    assert code == 0
    entry = open_checkpoint(tmp_path / "b").entry("x")
    assert entry.split.dims == [1, 0] and entry.split.mesh == [4, 2] and len(entry.chunks) == 8
    # rank 5 of a 4x2 mesh is block (2, 1): columns 6:9 (dim 1 in 4 parts), rows 5:9 (dim 0 in 2)
    got = restore(tmp_path / "b", rank=5, world_size=8, mesh=(4, 2))["x"]
    assert np.array_equal(got, x[5:9, 6:9])
    assert np.array_equal(restore(tmp_path / "b", rank=1, world_size=2)["x"], x[:, 5:])  # first split dim
    code, _, _ = _run(capsys, "ckpt", "export", str(tmp_path / "b"), "--h5", str(tmp_path / "b.h5"))
    code2, _, _ = _run(capsys, "ckpt", "import", "--h5", str(tmp_path / "b.h5"), str(tmp_path / "b2"))
    assert code == code2 == 0
    assert open_checkpoint(tmp_path / "b2").manifest == open_checkpoint(tmp_path / "b").manifest
    code, _, err = _run(capsys, "ckpt", "restore", str(tmp_path / "a"), "--to-world-size", "8", "--mesh", "3x3",
                        "--out", str(tmp_path / "c"))
    assert code != 0 and "does not multiply to world size 8" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()
    code, _, err = _run(capsys, "ckpt", "restore", str(tmp_path / "a"), "--to-world-size", "8", "--mesh", "4by2",
                        "--out", str(tmp_path / "c"))
    assert code == 2 and "not a mesh like 2x4" in err


def test_shard_that_does_not_fit_its_mesh_is_refused(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import CheckpointError
    x = np.zeros((4, 6))
    with pytest.raises(CheckpointError, match="does not fit shape"):
        save(tmp_path, {"x": Shard(x[:2, :2], (4, 6), dim=(0, 1), part=(0, 3), parts=(2, 3))}, step=1)
    with pytest.raises(CheckpointError, match=r"must have shape \[2, 2\]"):
        save(tmp_path, {"x": Shard(x[:2, :3], (4, 6), dim=(0, 1), part=(0, 0), parts=(2, 3))}, step=1)
    assert list_checkpoints(tmp_path) == []


def test_prune_of_a_directory_without_checkpoints_says_so(tmp_path, capsys):
    from fabric_hpc.cli.main import main

    # an empty root: nothing to prune yet, exit 0 (a cron job must not fail); not a root: exit 3
    assert main(["ckpt", "prune", str(tmp_path), "--keep-last", "1"]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    assert main(["ckpt", "prune", str(tmp_path / "other"), "--keep-last", "1"]) == 3
    assert "is not a checkpoint root" in capsys.readouterr().err


def test_verify_all_that_checks_nothing_says_so(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--all over an empty root says there is nothing to verify (exit 0, as list and prune); over a
    step directory or a directory that is not a root it exits 3 naming why; --step with --all is a
    usage error."""
    (tmp_path / "empty").mkdir()
    code, out, err = _run(capsys, "ckpt", "verify", str(tmp_path / "empty"), "--all")
    assert code == 0 and "nothing to verify" in out
    (tmp_path / "empty" / "notes.txt").write_text("x")
    code, _, err = _run(capsys, "ckpt", "verify", str(tmp_path / "empty"), "--all")
    assert code == 3 and "not a checkpoint root" in err and "fix:" in err
    code, _, err = _run(capsys, "ckpt", "verify", str(root / "step-0000000002"), "--all")
    assert code == 3 and "it is a checkpoint itself" in err and "drop --all" in err
    code, _, err = _run(capsys, "ckpt", "verify", str(root), "--all", "--step", "2")
    assert code == 2 and "--step and --all cannot be combined" in err
    assert _run(capsys, "ckpt", "verify", str(root), "--all")[0] == 0


def test_show_of_a_step_directory_with_another_step_names_the_fix(root: Path, capsys) -> None:
    """It said "steps present: []"."""
    code, _, err = _run(capsys, "ckpt", "show", str(root / "step-0000000003"), "--step", "2")
    assert code == 3 and "is the checkpoint of step 3, not a root" in err and f"give its root {root}" in err
    assert _run(capsys, "ckpt", "show", str(root / "step-0000000003"), "--step", "3")[0] == 0


def test_import_hf_with_a_bad_prefix_blames_the_prefix(tmp_path: Path, capsys) -> None:
    import torch
    from safetensors.torch import save_file
    (tmp_path / "hf").mkdir()
    save_file({"w": torch.ones(2)}, str(tmp_path / "hf" / "model.safetensors"))
    code, _, err = _run(capsys, "ckpt", "import-hf", str(tmp_path / "hf"), str(tmp_path / "ck"), "--prefix", "../evil")
    assert code == 3 and "prefix '../evil' is not a valid tensor name" in err and "key" not in err.split("fix:")[0]


def test_import_of_a_missing_h5_file_gives_the_fix(tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "ckpt", "import", "--h5", str(tmp_path / "nofile.h5"), str(tmp_path / "ck"))
    assert code == 3 and "no HDF5 file at" in err and "fix:" in err


def test_export_h5_refuses_an_existing_file_without_force_and_any_path_in_a_checkpoint(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing FILE needs --force; a FILE inside the checkpoint (a chunk file of the step being
    exported: the probe's DAMAGED case), a step directory or the checkpoint root is always refused."""
    from fabric_hpc.checkpoint import verify
    chunk = root / "step-0000000003" / "model" / "w" / "c.0.0"
    before = chunk.read_bytes()
    for target in (chunk, root / "step-0000000003" / "x.h5", root / "x.h5", root / "step-0000000002" / "model" / "y.h5"):
        for force in ((), ("--force",)):
            code, _, err = _run(capsys, "ckpt", "export", str(root), "--h5", str(target), *force)
            assert code == 3 and "inside the checkpoint directory" in err and "fix: write the HDF5 file outside" in err
            assert "Traceback" not in err
    assert chunk.read_bytes() == before and verify(root).ok and not (root / "x.h5").exists()
    other = tmp_path / "keep.h5"
    other.write_bytes(b"precious")
    code, _, err = _run(capsys, "ckpt", "export", str(root), "--h5", str(other))
    assert code == 3 and "already exists" in err and "--force" in err and other.read_bytes() == b"precious"
    code, _, _ = _run(capsys, "ckpt", "export", str(root), "--h5", str(other), "--force")
    assert code == 0 and other.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
