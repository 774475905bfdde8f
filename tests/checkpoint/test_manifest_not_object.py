"""A manifest whose ``fabric_checkpoint`` attribute is not a JSON object is damage like any other
(exit 3, CheckpointCorruptError), and the healthy steps of the root stay listable and prunable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import restore, save, verify
from fabric_hpc.checkpoint.errors import CheckpointCorruptError
from tests.checkpoint.builders import run_cli


def _root(tmp_path: Path, attr) -> tuple[Path, Path]:
    root = tmp_path / "ck"
    for s in (1, 2, 3):
        save(root, {"w": np.full(4, s, np.float32)}, step=s)
    bad = root / "step-0000000002"
    doc = json.loads((bad / "zarr.json").read_bytes())
    doc["attributes"]["fabric_checkpoint"] = attr
    (bad / "zarr.json").write_text(json.dumps(doc))
    return root, bad



@pytest.mark.parametrize("attr", ["x", [], 1, None, True])
def test_python_api_raises_corrupt(tmp_path: Path, attr) -> None:
    _, bad = _root(tmp_path, attr)
    with pytest.raises(CheckpointCorruptError, match="manifest is not valid"):
        restore(bad)
    report = verify(bad)
    assert not report.ok and any("not a JSON object" in p for p in report.problems), report.problems


@pytest.mark.parametrize("attr", ["x", [], 1, None])
def test_cli_reports_damaged_and_keeps_working_on_the_healthy_steps(tmp_path: Path, capsys, attr) -> None:
    root, bad = _root(tmp_path, attr)
    code, out, err = run_cli(capsys, "ckpt", "list", str(root))
    assert code in (0, 3) and "Traceback" not in err and "TypeError" not in out + err
    assert "step-0000000001" in out + err or " 1 " in out, out
    assert "damaged" in (out + err).lower()
    for args in (("show", str(bad)), ("verify", str(bad)), ("verify", "--all", str(root)),
                 ("restore", str(bad), "--to-world-size", "2", "--out", str(tmp_path / "o")),
                 ("export", str(bad), "--h5", str(tmp_path / "o.h5"))):
        code, out, err = run_cli(capsys, "ckpt", *args)
        assert code == 3, (args, code, out, err)
        assert "TypeError" not in out + err and "not a mapping" not in out + err, (args, err)
    code, out, err = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1")
    assert code in (0, 3) and "TypeError" not in out + err, (code, out, err)
    assert (root / "step-0000000003").is_dir()
    assert not (root / "step-0000000001").exists()


def test_attributes_not_an_object_is_damage(tmp_path: Path) -> None:
    _, bad = _root(tmp_path, {})
    doc = json.loads((bad / "zarr.json").read_bytes())
    doc["attributes"] = "fabric_checkpoint"
    (bad / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointCorruptError):
        restore(bad)
