"""Reading a checkpoint whose non-tensor leaves (``fabric_checkpoint_values``) someone else wrote
(review 26): a leaf named like a tensor, or nesting with one, replaced or merged that tensor on
restore while verify said ok; a leaf nested 500 levels deep crashed verify/show/restore with a
RecursionError; an empty ``int_keys`` path passed verify and crashed restore with IndexError. All
are damage now (verify exit 3 naming it), refused the same way by an HDF5 import, and a save can
write none of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError, restore, save, verify
from fabric_hpc.checkpoint.format import VALUES_ATTR
from fabric_hpc.checkpoint.values import MAX_VALUE_DEPTH
from fabric_hpc.cli.main import main


def _edited(tmp_path: Path, state: dict, edit: Callable[[dict[str, Any]], None]) -> Path:
    save(tmp_path / "ck", state, step=1)
    p = tmp_path / "ck" / "step-0000000001" / "zarr.json"
    doc = json.loads(p.read_text())
    edit(doc["attributes"][VALUES_ATTR])
    p.chmod(0o600)
    p.write_text(json.dumps(doc))
    return tmp_path / "ck"


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(vals: dict[str, Any]) -> None:
        vals["leaves"][new] = vals["leaves"].pop(old)
    return edit


def _refused(root: Path, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify(root)
    assert not report.ok and any(needle in p for p in report.problems), report.problems
    with pytest.raises(CheckpointCorruptError, match=needle):
        restore(root)
    assert main(["ckpt", "verify", str(root)]) == 3
    assert needle in capsys.readouterr().out


@pytest.mark.parametrize(("state", "old", "new", "needle"), [
    ({"a": {"b": np.arange(3.0)}, "v": {"x": 1}}, "v", "a",
     "'a' is both a non-tensor value and a group of 'a/b'"),          # was merged: {'a': {'x': 1, 'b': ...}}
    ({"a": {"b": np.arange(3.0)}, "v": 7}, "v", "a/b", "'a/b' is both a tensor and a non-tensor value"),
    ({"a": np.arange(3.0), "v": 7}, "v", "a/x", "'a' is both a tensor and a group of 'a/x'"),
])
def test_a_value_leaf_clashing_with_a_tensor_is_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       state: dict, old: str, new: str, needle: str) -> None:
    _refused(_edited(tmp_path, state, _rename(old, new)), needle, capsys)


def test_an_hdf5_import_refuses_a_clashing_value_leaf(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    from fabric_hpc.checkpoint.hdf5 import export_h5, import_h5
    save(tmp_path / "ck", {"a": {"b": np.arange(3.0)}, "v": 7}, step=1)
    src = export_h5(tmp_path / "ck", tmp_path / "x.h5")
    with h5py.File(src, "r+") as f:
        meta = json.loads(f.attrs["fabric_checkpoint"])
        meta["values"]["leaves"]["a/b"] = meta["values"]["leaves"].pop("v")
        f.attrs["fabric_checkpoint"] = json.dumps(meta)
    with pytest.raises(CheckpointCorruptError, match="'a/b' is both a tensor and a non-tensor value"):
        import_h5(src, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()


def test_a_save_refuses_a_value_that_is_a_group_of_a_tensor(tmp_path: Path) -> None:
    """{'a': 5, 'a/b': tensor} was saved, and its restore died with TypeError."""
    with pytest.raises(CheckpointError, match="'a' is both a non-tensor value and a group of 'a/b'"):
        save(tmp_path / "ck", {"a": 5, "a/b": np.arange(3.0)}, step=1)
    assert not list((tmp_path / "ck").glob("step-*"))


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 500])
def test_a_deeply_nested_value_leaf_is_damage_not_a_recursion_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    root = _edited(tmp_path, {"a": np.arange(3.0), "v": 1},
                   lambda vals: vals["leaves"].__setitem__("v", _nest(depth)))
    _refused(root, f"'v': lists, tuples and dicts nest more than {MAX_VALUE_DEPTH} levels deep", capsys)
    assert main(["ckpt", "show", str(root)]) == 3
    assert "nest more than" in capsys.readouterr().err


def test_nesting_up_to_the_limit_saves_and_deeper_is_refused(tmp_path: Path) -> None:
    deepest = {"a": np.arange(3.0), "v": _nest(MAX_VALUE_DEPTH - 1), "t": (float("inf"),)}
    save(tmp_path / "ck", deepest, step=1)
    assert restore(tmp_path / "ck")["v"] == deepest["v"]
    with pytest.raises(CheckpointError, match=f"nest more than {MAX_VALUE_DEPTH} levels"):
        save(tmp_path / "ck", {"v": _nest(MAX_VALUE_DEPTH + 1)}, step=2)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CheckpointError, match="a cycle"):
        save(tmp_path / "ck", {"v": cyclic}, step=3)


@pytest.mark.parametrize(("path", "needle"), [
    ([], "an int_keys path is empty"),
    ([True], "int_keys.1.0"),
    (["a", 1.5], "int_keys.1.1"),
])
def test_a_bad_int_keys_path_is_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       path: list[Any], needle: str) -> None:
    root = _edited(tmp_path, {"a": {0: np.arange(3.0)}},
                   lambda vals: vals["int_keys"].append(path))
    _refused(root, needle, capsys)


@pytest.mark.parametrize("field", ["user_metadata", "layout"])
def test_deeply_nested_manifest_metadata_is_damage_not_a_serializer_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str) -> None:
    """metadata 600 levels deep: `fabric ckpt show` died with pydantic's "Maximum serialization depth
    exceeded" traceback, and a save of 300 levels with the same raw ValueError."""
    save(tmp_path / "ck", {"a": np.arange(3.0)}, step=1)
    p = tmp_path / "ck" / "step-0000000001" / "zarr.json"
    doc = json.loads(p.read_text())
    doc["attributes"]["fabric_checkpoint"][field] = {"k": _nest(600)}
    p.chmod(0o600)
    p.write_text(json.dumps(doc))
    _refused(tmp_path / "ck", f"{field}: lists and dicts nest more than {MAX_VALUE_DEPTH} levels", capsys)
    assert main(["ckpt", "show", "--json", str(tmp_path / "ck")]) == 3
    assert "nest more than" in capsys.readouterr().err


def test_a_save_refuses_metadata_nested_too_deep(tmp_path: Path) -> None:
    save(tmp_path / "ck", {"a": np.arange(3.0)}, step=1, metadata={"k": _nest(MAX_VALUE_DEPTH)})
    for kw in ({"metadata": {"k": _nest(300)}}, {"layout": {"k": _nest(MAX_VALUE_DEPTH + 1)}},
               {"metadata": {"k": _nest(5000)}}):  # json.dumps: RecursionError
        with pytest.raises(CheckpointError, match=f"nests lists and dicts more than {MAX_VALUE_DEPTH}"):
            save(tmp_path / "ck", {"a": np.arange(3.0)}, step=2, **kw)
    assert [p.name for p in (tmp_path / "ck").glob("step-*")] == ["step-0000000001"]
