"""export-hf then import-hf of a legal checkpoint: a key too long for one name part (a part is at
most 200 characters) is cut at its dots into name parts, so the round trip works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, restore, save, verify
from fabric_hpc.checkpoint.interop.hf import export_hf, import_hf
from fabric_hpc.checkpoint.interop.stream import imported_name
from tests.checkpoint.builders import run_cli

pytest.importorskip("torch")
pytest.importorskip("safetensors")


def _round_trip(tmp_path: Path, capsys, state: dict) -> dict:
    save(tmp_path / "ck", state, step=3)
    code, out, err = run_cli(capsys, "ckpt", "export-hf", str(tmp_path / "ck"), str(tmp_path / "hf"))
    assert code == 0, (out, err)
    code, out, err = run_cli(capsys, "ckpt", "import-hf", str(tmp_path / "hf"), str(tmp_path / "back"))
    assert code == 0, (out, err)
    assert verify(tmp_path / "back").ok
    return restore(tmp_path / "back")


def test_a_200_character_part_under_a_group_round_trips(tmp_path: Path, capsys) -> None:
    t = np.arange(6, dtype=np.float32)
    back = _round_trip(tmp_path, capsys, {"m": {"a" * 200: t}, "short": np.ones(2)})
    assert set(back) == {"m", "short"} and list(back["m"]) == ["a" * 200]
    assert np.asarray(back["m"]["a" * 200]).tobytes() == t.tobytes()
    export_hf(tmp_path / "back", tmp_path / "hf2")  # and it exports to the same key again
    again = (tmp_path / "hf2" / "model.safetensors").read_bytes()
    assert again == (tmp_path / "hf" / "model.safetensors").read_bytes()


def test_parts_holding_dots_and_chunk_like_pieces(tmp_path: Path, capsys) -> None:
    key = "x.c." + "b" * 150 + ".c." + "d" * 120
    back = _round_trip(tmp_path, capsys, {"x.c": {"b" * 150 + ".c": {"d" * 120: np.ones(3, np.float32)}}})
    assert verify(tmp_path / "back").ok and back
    export_hf(tmp_path / "back", tmp_path / "hf2")  # the very key again ('/' -> '.')
    from safetensors import safe_open
    with safe_open(str(tmp_path / "hf2" / "model.safetensors"), framework="np") as f:
        assert list(f.keys()) == [key]


def test_short_keys_stay_one_flat_name_and_bad_keys_are_still_refused() -> None:
    assert imported_name("model.layers.0.weight", None, source="safetensors") == "model.layers.0.weight"
    assert imported_name("m." + "a" * 200, None, source="safetensors") == "m/" + "a" * 200
    assert imported_name("m." + "a" * 200, "pre", source="safetensors") == "pre/m/" + "a" * 200
    assert imported_name("zarr.json", None, source="safetensors") == "zarr/json"  # export of zarr/json
    with pytest.raises(CheckpointError, match="not a valid tensor name"):
        imported_name("bad key." + "a" * 200, None, source="safetensors")
    with pytest.raises(CheckpointError, match="not a valid tensor name"):
        imported_name("a" * 201, None, source="safetensors")


def test_import_hf_python_api(tmp_path: Path) -> None:
    save(tmp_path / "ck", {"m": {"a" * 200: np.ones(2, np.float32)}}, step=0)
    export_hf(tmp_path / "ck", tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert list(restore(tmp_path / "back")["m"]) == ["a" * 200]
