"""``fabric ckpt`` option types, help and error messages: one --step type everywhere, the recipe
keys in convert's help, a bad recipe regex named in the fix, verify naming the manifest's
problem, a --mesh that fits no split tensor refused, ``list`` never cutting a timestamp."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, open_checkpoint, save
from tests.checkpoint.builders import run_cli

STEP_COMMANDS = ["show", "verify", "restore", "export", "export-hf", "export-dcp", "convert", "import-hf", "import-dcp"]


_run = run_cli  # (exit code, stdout, stderr) of fabric ARGS


@pytest.fixture
def root(tmp_path: Path) -> Path:
    w = np.arange(48, dtype=np.float32).reshape(12, 4)
    save(tmp_path / "ck", {"w": Shard.of(w, 0, 0, 1), "b": np.zeros(3)}, step=10)
    return tmp_path / "ck"


@pytest.mark.parametrize("command", STEP_COMMANDS)
def test_every_step_option_is_the_same_bounded_type(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ckpt", command, "--help")
    assert code == 0
    line = re.search(r"--step\s+INTEGER RANGE[^\]]*0<=x<=9999999999\]", out)
    assert line, out


@pytest.mark.parametrize("command", ["show", "verify", "export"])
def test_a_negative_or_huge_step_is_a_usage_error(command: str, root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--h5", str(tmp_path / "x.h5")] if command == "export" else []
    for bad in ("-1", "10000000000"):
        code, _, err = _run(capsys, "ckpt", command, str(root), "--step", bad, *extra)
        assert code == 2 and "0<=x<=9999999999" in err


def test_convert_help_lists_every_recipe_key(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "ckpt", "convert", "--help")
    text = " ".join(out.split())
    for key in ("rename", "pipeline", "transpose", "fuse_qkv", "split_qkv", "fuse", "split", "cast", "tp", "drop"):
        assert re.search(rf"\b{key}\b", text), key


def test_a_bad_recipe_regex_is_named_in_the_fix(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"rename": [{"pattern": "model\\.([", "replace": "x"}], "drop": ["ok", "a("]}))
    code, _, err = _run(capsys, "ckpt", "convert", str(root), str(tmp_path / "out"), "--recipe", str(recipe))
    fix = err.split("fix:", 1)[1]
    assert code == 3 and "rename.0.pattern 'model\\\\.(['" in fix and "drop.1 'a('" in fix
    assert "recipe keys" not in fix and not (tmp_path / "out").exists()


def test_verify_names_what_is_wrong_with_the_manifest(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "step-0000000010" / "zarr.json").write_text(json.dumps({"node_type": "group", "attributes": {}}))
    code, out, _ = _run(capsys, "ckpt", "verify", str(root), "--json")
    problems = json.loads(out)[0]["problems"]
    assert code == 3 and "no 'fabric_checkpoint' attribute" in problems[0]


def test_a_mesh_that_fits_no_split_tensor_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = np.arange(16 * 8, dtype=np.float32).reshape(16, 8)
    blocks = {"w": Shard.of(whole, (0, 1), (0, 0), (1, 1))}  # split over 2 dims (a 1x1 mesh)
    save(tmp_path / "ck", blocks, step=5)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "ckpt", "restore", str(tmp_path / "ck"), "--to-world-size", "8", "--mesh", "4x2x1",
                        "--out", str(out))
    assert code == 3 and "has 3 dimensions" in err and "over dims [0, 1]" in err and "fix: give one mesh factor" in err
    assert not out.exists()
    code, _, _ = _run(capsys, "ckpt", "restore", str(tmp_path / "ck"), "--to-world-size", "8", "--mesh", "4x2",
                      "--out", str(out))
    split = open_checkpoint(out).manifest.tensors["w"].split
    assert code == 0 and split.dims == [0, 1] and split.mesh == [4, 2]


def test_list_never_cuts_a_timestamp_at_80_columns(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    save(root, {"w": np.zeros(2)}, step=11, tags=["a-long-tag-name", "another-tag"])
    code, out, _ = _run(capsys, "ckpt", "list", str(root))
    created = open_checkpoint(root).manifest.created_at
    table = [line for line in out.splitlines() if not line.startswith("checkpoints in ")]  # the path's length
    assert code == 0 and created in out and max(map(len, table)) <= 80
