"""Atomic commit, leftovers, verify and restore's refusal of damaged checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import (
    CheckpointCorruptError, CheckpointError, CheckpointNotFoundError, list_checkpoints, open_checkpoint,
    restore, save, verify,
)
from fabric_hpc.checkpoint.store import read_latest
from fabric_hpc.errors import ConfigError


def _state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"a": {"w": rng.standard_normal((32, 16)).astype(np.float32)}, "b": rng.integers(0, 9, 100)}


def test_latest_pointer_and_steps(tmp_path: Path) -> None:
    for step in (1, 2, 5):
        save(tmp_path, _state(step), step=step)
    assert read_latest(tmp_path) == "step-0000000005"
    assert [r.step for r in list_checkpoints(tmp_path)] == [1, 2, 5]
    assert np.array_equal(restore(tmp_path, step=2)["b"], _state(2)["b"])
    with pytest.raises(CheckpointError, match="already exists"):
        save(tmp_path, _state(), step=5)
    with pytest.raises(CheckpointNotFoundError, match="steps present"):
        restore(tmp_path, step=3)


def test_failed_save_leaves_previous_checkpoint_and_no_leftovers(tmp_path: Path) -> None:
    save(tmp_path, _state(1), step=1)

    def boom() -> None:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        save(tmp_path, _state(2), step=2, _after_chunks=boom)
    assert read_latest(tmp_path) == "step-0000000001"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "latest", "step-0000000001"]


def test_leftovers_of_a_crash_are_cleaned_on_next_save(tmp_path: Path) -> None:
    import socket
    save(tmp_path, _state(1), step=1)
    dead = f".tmp-step-0000000002-{socket.gethostname()}-99999999-0000abcd"  # no such pid: its writer is gone
    (tmp_path / dead).mkdir()
    (tmp_path / dead / "junk").write_bytes(b"x" * 10)
    (tmp_path / ".tmp-step-0000000002-123-abcd").mkdir()  # names no host: its writer is unknown, kept
    (tmp_path / ".trash-step-0000000000-ffff").mkdir()
    (tmp_path / ".latest-99-beef").write_text("step-0000000002")
    res = save(tmp_path, _state(3), step=3)
    assert sorted(res.cleaned) == [".latest-99-beef", dead, ".trash-step-0000000000-ffff"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", ".tmp-step-0000000002-123-abcd", "latest",
                                                          "step-0000000001", "step-0000000003"]


def test_dangling_latest_falls_back_to_newest(tmp_path: Path) -> None:
    save(tmp_path, _state(1), step=1)
    (tmp_path / "latest").write_text("step-0000000009\n")
    assert open_checkpoint(tmp_path).step == 1


def test_damaged_latest_is_refused_not_rolled_back_and_the_root_reports_it(tmp_path: Path) -> None:
    """``latest`` naming a step whose manifest is gone is damage (a commit renames a complete
    directory into place): opening the root refuses instead of quietly using an older step, and
    the root's own problems (that step, a pointer to nothing, a pointer that is not a step name)
    are listed."""
    from fabric_hpc.checkpoint.store import root_problems, root_warnings
    for step in (1, 2):
        save(tmp_path, _state(step), step=step)
    assert root_problems(tmp_path) == []
    (tmp_path / "step-0000000002" / "zarr.json").unlink()
    with pytest.raises(CheckpointCorruptError, match="latest names step-0000000002, which is damaged"):
        open_checkpoint(tmp_path)
    assert open_checkpoint(tmp_path, 1).step == 1  # an explicit older step still restores
    assert root_problems(tmp_path) == ["step-0000000002: not a committed checkpoint (zarr.json missing, "
                                       "or not a directory)"]
    (tmp_path / "latest").write_text("step-0000000009\n")  # gone (moved aside): restore falls back, a warning
    assert not any("latest" in p for p in root_problems(tmp_path))
    assert "latest: names step-0000000009, which is missing" in root_warnings(tmp_path)[0]
    (tmp_path / "latest").write_text("../../etc\n")
    assert "latest: not a regular file" in root_problems(tmp_path)[0]


def test_a_group_inside_a_checkpoint_is_named_and_a_symlinked_chunk_reported_once(tmp_path: Path) -> None:
    save(tmp_path, _state(1), step=1)
    with pytest.raises(CheckpointNotFoundError, match=r"a/?\S* is a group of tensors inside the checkpoint"):
        open_checkpoint(tmp_path / "step-0000000001" / "a")
    chunk = _chunk(tmp_path)
    os.replace(chunk, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", chunk)
    report = verify(tmp_path)
    assert [p for p in report.problems if "a/w/c.0.0" in p] == report.problems, report.problems
    assert len(report.problems) == 1 and "(not followed)" in report.problems[0] and report.chunks == 2


def test_a_fifo_or_symlink_the_manifest_does_not_name_is_reported_once(tmp_path: Path) -> None:
    """An extra c.7 FIFO was listed twice: as a FIFO and as "chunk file not in the manifest"."""
    save(tmp_path, _state(1), step=1)
    tensor_dir = _chunk(tmp_path).parent
    os.mkfifo(tensor_dir / "c.7.0")
    os.symlink(tmp_path / "elsewhere", tensor_dir / "c.8.0")
    (tensor_dir / "c.9.0").write_bytes(b"x")  # a stray regular file is still unexpected
    report = verify(tmp_path)
    assert sorted(report.problems) == ["a/w/c.7.0: is a FIFO (not followed)",
                                       "a/w/c.8.0: is a symlink (not followed)",
                                       "a/w/c.9.0: chunk file not in the manifest"], report.problems


def test_no_save_lands_inside_a_committed_checkpoint(tmp_path: Path) -> None:
    save(tmp_path / "ck", _state(1), step=1)
    inner = tmp_path / "ck" / "step-0000000001" / "a" / "new-root"
    with pytest.raises(CheckpointError, match="inside the committed checkpoint") as err:
        save(inner, _state(2), step=2)
    assert str(err.value).splitlines()[0].endswith("step-0000000001")  # the checkpoint, not its inner group "a"
    assert not inner.exists() and verify(tmp_path / "ck").ok


def _chunk(root: Path, name: str = "a/w") -> Path:
    return open_checkpoint(root).path / name / "c.0.0"


def test_verify_detects_flipped_byte_and_restore_refuses(tmp_path: Path) -> None:
    save(tmp_path, _state(), step=1)
    assert verify(tmp_path).ok
    path = _chunk(tmp_path)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify(tmp_path)
    assert not report.ok and report.problems == ["a/w/c.0.0: checksum mismatch" + report.problems[0].split("mismatch")[1]]
    with pytest.raises(CheckpointCorruptError, match=r"damaged chunk a/w/c.0.0: crc32c") as info:
        restore(tmp_path)
    assert isinstance(info.value, ConfigError) and "older step" in str(info.value)
    assert np.array_equal(restore(tmp_path, names=["b"])["b"], _state()["b"])  # the intact part still reads


def test_verify_detects_truncated_and_missing_chunks(tmp_path: Path) -> None:
    save(tmp_path, _state(), step=1)
    path = _chunk(tmp_path)
    os.truncate(path, 100)
    os.remove(open_checkpoint(tmp_path).path / "b" / "c.0")
    problems = verify(tmp_path).problems
    assert any(p.startswith("a/w/c.0.0: truncated") for p in problems)
    assert "b/c.0: missing" in problems
    with pytest.raises(CheckpointCorruptError, match="expected 2048"):
        restore(tmp_path, names=["a"])
    with pytest.raises(CheckpointCorruptError, match="b/c.0: chunk file is missing"):
        restore(tmp_path, names=["b"])


def test_verify_detects_manifest_that_does_not_match_arrays(tmp_path: Path) -> None:
    res = save(tmp_path, _state(), step=1)
    meta = res.path / "a" / "w" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"] = [64, 16]
    meta.write_text(json.dumps(doc))
    (res.path / "b" / "c.1").write_bytes(b"stray")
    problems = verify(tmp_path).problems
    assert any("a/w/zarr.json: shape is [64, 16], manifest says [32, 16]" in p for p in problems)
    assert "b/c.1: chunk file not in the manifest" in problems[-1] or any("b/c.1" in p for p in problems)


@pytest.mark.parametrize("field, change, needle", [
    ("chunk_key_encoding", {"name": "default", "configuration": {"separator": "/"}},
     "a/w/zarr.json: chunk_key_encoding is {'name': 'default', 'configuration': {'separator': '/'}}"),
    ("attributes", {"fabric": {"dtype": "int32", "name": "a/w"}},
     "a/w/zarr.json: attributes.fabric is {'dtype': 'int32', 'name': 'a/w'}, manifest says "
     "{'dtype': 'float32', 'name': 'a/w'}"),
])
def test_verify_detects_array_metadata_that_breaks_plain_zarr_reads(tmp_path: Path, field: str, change: dict,
                                                                   needle: str) -> None:
    res = save(tmp_path, _state(), step=1)
    meta = res.path / "a" / "w" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc[field] = change
    meta.write_text(json.dumps(doc))
    assert any(needle in p for p in verify(tmp_path).problems)


def test_verify_leaves_the_users_own_array_attributes_alone(tmp_path: Path) -> None:
    res = save(tmp_path, _state(), step=1)
    meta = res.path / "a" / "w" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["note"] = "added by hand"
    meta.write_text(json.dumps(doc))
    assert verify(tmp_path).ok


def test_tampered_manifest_cannot_escape_directory(tmp_path: Path) -> None:
    res = save(tmp_path, _state(), step=1)
    root_meta = res.path / "zarr.json"
    doc = json.loads(root_meta.read_text())
    entry = doc["attributes"]["fabric_checkpoint"]["tensors"].pop("b")
    entry["path"] = "../../../etc/passwd"
    doc["attributes"]["fabric_checkpoint"]["tensors"]["../../../etc/passwd"] = entry
    root_meta.write_text(json.dumps(doc))
    with pytest.raises(CheckpointCorruptError, match="not allowed"):
        restore(tmp_path)
    assert not verify(tmp_path).ok


def test_garbage_manifest_is_reported_not_crashing(tmp_path: Path) -> None:
    res = save(tmp_path, _state(), step=1)
    (res.path / "zarr.json").write_text("{not json")
    assert not verify(res.path).ok
    with pytest.raises(CheckpointCorruptError, match="manifest is not valid"):
        restore(res.path)


def test_saving_an_older_step_does_not_move_latest_back(tmp_path: Path) -> None:
    """``latest`` is the highest committed step: importing or saving an older step must not make
    every restore silently roll back to it."""
    save(tmp_path, _state(1), step=100)
    save(tmp_path, _state(2), step=50)
    assert read_latest(tmp_path) == "step-0000000100" and open_checkpoint(tmp_path).step == 100
    save(tmp_path, _state(3), step=200)
    assert read_latest(tmp_path) == "step-0000000200"


def test_prune_never_counts_or_deletes_a_damaged_checkpoint(tmp_path: Path) -> None:
    """A newest step whose manifest is torn is not one of the "last N": prune keeps the newest
    readable ones too (it used to delete every good checkpoint and keep only the damaged one)."""
    from fabric_hpc.checkpoint import RetentionPolicy, prune, restore

    for step in (1, 2, 3):
        save(tmp_path, {"w": np.full(4, step, np.float32)}, step=step)
    manifest = tmp_path / "step-0000000003" / "zarr.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    res = prune(tmp_path, RetentionPolicy(keep_last=1, keep_tagged=False))
    assert res.removed == [1] and res.kept == [2, 3] and res.damaged == [3]
    assert restore(tmp_path, step=2)["w"].tolist() == [2.0] * 4


def test_a_held_checkpoint_is_skipped_by_prune_and_an_unheld_one_says_it_was_pruned(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import CheckpointNotFoundError, RetentionPolicy, open_checkpoint, prune

    for step in (1, 2):
        save(tmp_path, {"w": np.full(4, step, np.float32)}, step=step)
    with open_checkpoint(tmp_path, 1) as ck:
        assert prune(tmp_path, RetentionPolicy(keep_last=1)).busy == [1]
        assert ck.read("w").tolist() == [1.0] * 4
    loose = open_checkpoint(tmp_path, 1)  # not held: prune may take it
    assert prune(tmp_path, RetentionPolicy(keep_last=1)).removed == [1]
    with pytest.raises(CheckpointNotFoundError, match="was removed while it was being read"):
        loose.read("w")


def test_a_damaged_manifest_is_named_in_one_line(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import CheckpointCorruptError, open_checkpoint

    save(tmp_path, {"w": np.zeros(2, np.float32)}, step=1)
    manifest = tmp_path / "step-0000000001" / "zarr.json"
    good = manifest.read_text()
    doc = json.loads(good)
    doc["attributes"]["fabric_checkpoint"]["step"] = float("nan")
    manifest.write_text(json.dumps(doc))
    with pytest.raises(CheckpointCorruptError) as nan:
        open_checkpoint(tmp_path, 1)
    assert "step" in str(nan.value) and "errors.pydantic.dev" not in str(nan.value)
    assert "\n" not in nan.value.message
    manifest.write_bytes(b"\xff\xfe" + good.encode())
    with pytest.raises(CheckpointCorruptError, match=r"not UTF-8 \(byte offset 0\)"):
        open_checkpoint(tmp_path, 1)


@pytest.mark.parametrize("damage", [{"format_version": "one"}, {"tensors": {"w": {"path": "w"}}}])
def test_prune_keeps_a_step_whose_manifest_is_json_but_not_a_manifest(tmp_path: Path, damage: dict) -> None:
    """Valid JSON that does not validate as a manifest is damage too: not counted among the
    newest N, kept, and listed as damaged (prune used to delete every restorable step)."""
    from fabric_hpc.checkpoint import RetentionPolicy, prune

    for step in (10, 20, 30):
        save(tmp_path, {"w": np.full(4, step, np.float32)}, step=step)
    manifest = tmp_path / "step-0000000030" / "zarr.json"
    doc = json.loads(manifest.read_text())
    doc["attributes"]["fabric_checkpoint"].update(damage)
    manifest.write_text(json.dumps(doc))
    res = prune(tmp_path, RetentionPolicy(keep_last=1, keep_tagged=False))
    assert res.removed == [10] and res.kept == [20, 30] and res.damaged == [30]
    assert restore(tmp_path, step=20)["w"].tolist() == [20.0] * 4


def test_a_manifest_naming_a_tensor_that_is_also_a_group_is_damage(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """'model' a tensor and 'model/w' a tensor under it: verify names it, restore refuses (it
    was a bare IndexError, and the CLI restore exited 0 dropping model/w)."""
    import shutil

    from fabric_hpc.cli.main import main

    save(tmp_path, {"model": {"w": np.arange(3.0)}, "other": np.float64(5)}, step=1)
    step_dir = tmp_path / "step-0000000001"
    os.rename(step_dir / "other" / "c", step_dir / "model" / "c")
    doc = json.loads((step_dir / "zarr.json").read_text())
    tensors = doc["attributes"]["fabric_checkpoint"]["tensors"]
    tensors["model"] = {**tensors.pop("other"), "path": "model"}
    (step_dir / "zarr.json").write_text(json.dumps(doc))
    shutil.rmtree(step_dir / "other")
    needle = "'model' is both a tensor and a group of 'model/w'"
    assert any(needle in p for p in verify(tmp_path).problems)
    with pytest.raises(CheckpointCorruptError, match=needle):
        restore(tmp_path)
    assert main(["ckpt", "restore", str(tmp_path), "--to-world-size", "1", "--out", str(tmp_path / "o")]) == 3
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("flip", ["inside", "outside"])
def test_a_partial_restore_checks_the_crc_of_every_chunk_it_touches(tmp_path: Path, flip: str) -> None:
    """Saved in 3 parts, restored on 6 ranks: rank 1 reads the second half of chunk 0 only. A bit
    flipped in that chunk (in the rows rank 1 keeps, or in the rows it does not) is refused, not
    returned as wrong values; the other chunks still restore."""
    from fabric_hpc.checkpoint.format import SplitInfo
    whole = np.arange(4099 * 16, dtype=np.float32).reshape(4099, 16)
    save(tmp_path, {"w": whole}, step=10, splits={"w": SplitInfo(dim=0, parts=3)})  # as 3 ranks save it
    entry = open_checkpoint(tmp_path).entry("w")
    assert entry.chunk_shape == [1367, 16] and len(entry.chunks) == 3
    row = 1000 if flip == "inside" else 10  # rank 1 of 6 keeps rows 684..1367 of chunk 0
    path = tmp_path / "step-0000000010" / "w" / "c.0.0"
    data = bytearray(path.read_bytes())
    data[row * 16 * 4] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match=r"damaged chunk w/c.0.0: crc32c"):
        restore(tmp_path, rank=1, world_size=6)
    assert np.array_equal(restore(tmp_path, rank=3, world_size=6)["w"], whole[2052:2736])  # chunk 1 only


def test_a_save_in_progress_counts_as_inside_a_checkpoint(tmp_path: Path) -> None:
    """Before: a `.tmp-step-…` directory (a save in progress, renamed into place at commit with whatever it
    holds) was not a checkpoint to `refuse_inside_checkpoint`: an export or an inference output given there
    was written into the step about to be committed."""
    from fabric_hpc.checkpoint.errors import CheckpointError
    from fabric_hpc.checkpoint.writer import inside_a_checkpoint, refuse_inside_checkpoint

    tmp = tmp_path / "ck" / ".tmp-step-0000000004-host@4026531836-77-0badcafe"
    (tmp / "model").mkdir(parents=True)
    assert inside_a_checkpoint(tmp / "model" / "out") == tmp
    with pytest.raises(CheckpointError, match="inside the checkpoint"):
        refuse_inside_checkpoint(tmp / "model" / "out", "the safetensors export")
    (tmp_path / "ck" / ".tmp-notes").mkdir()  # not a save: another dot directory beside the steps
    assert inside_a_checkpoint(tmp_path / "ck" / ".tmp-notes" / "x") is None
