"""A node-local part file names a share of 2 or more nodes (one node's save is a complete step-N,
never a part), and a part file this user may not read is a permission error, not a "damaged" part
whose fix would be to delete it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.checkpoint import fsio, part_file
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointIOError
from fabric_hpc.checkpoint.part_file import PART_FILE, read_part_file


def _part(tmp_path: Path, **info) -> Path:
    d = tmp_path / "part-step-0000000005"
    d.mkdir()
    base = {"step": 5, "token": "ab12", "node": 0, "nodes": 2, "chunks": [["w", [0]]]}
    (d / PART_FILE).write_text(json.dumps({**base, **info}))
    return d


def test_a_good_part_reads(tmp_path):
    assert read_part_file(_part(tmp_path), 5)["nodes"] == 2


def test_a_part_of_one_node_is_damaged(tmp_path):
    with pytest.raises(CheckpointCorruptError, match="a part of 1 node"):
        read_part_file(_part(tmp_path, nodes=1), 5)


def test_a_part_file_that_may_not_be_read_is_a_permission_error(tmp_path, monkeypatch):
    d = _part(tmp_path)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fsio, "read_in", denied)
    with pytest.raises(CheckpointIOError, match="permission denied") as caught:
        read_part_file(d, 5)
    assert "delete" not in (caught.value.hint or "")
    assert part_file.fsio is fsio
