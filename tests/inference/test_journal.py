"""Exactly-once storage: atomic chunks, fsync'd journal, resume skip-set, loud merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.inference import ChunkSink, EngineResult, MergeError, committed_ids, merge_outputs
from fabric_hpc.inference.journal import next_attempt, prepare_resume


def _sink(out: Path, n: int, *, rank: int = 0, attempt: int = 1, size: int = 4,
          prefix: str = "x") -> ChunkSink:
    sink = ChunkSink(out, rank=rank, attempt=attempt, chunk_size=size)
    for i in range(n):
        if sink.add(EngineResult(f"{prefix}{i}", [i, i + 1])):
            sink.commit()
    return sink


def test_commit_journal_and_merge(tmp_path: Path) -> None:
    sink = _sink(tmp_path, 10)
    assert len(sink) == 2                       # 8 committed in two chunks, 2 buffered
    assert committed_ids(tmp_path) == {f"x{i}" for i in range(8)}
    assert sink.commit() == ["x8", "x9"]
    sink.close()
    res = merge_outputs(tmp_path, [f"x{i}" for i in range(10)])
    lines = [json.loads(x) for x in Path(res["results"]).read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(f"x{i}" for i in range(10))
    assert {r["id"]: r["tokens"] for r in lines}["x3"] == [3, 4]
    assert not list((tmp_path / "chunks").glob("*.tmp"))


def test_unjournalled_chunk_is_an_orphan_removed_on_resume(tmp_path: Path) -> None:
    sink = _sink(tmp_path, 8)
    sink.close()
    # a crash between the chunk rename and the journal record leaves a chunk nobody names
    (tmp_path / "chunks" / "a000001-r00000-c0000099.jsonl").write_text('{"id":"x100"}\n')
    (tmp_path / "chunks" / "a000001-r00000-c0000100.jsonl.tmp").write_text("torn")
    assert "x100" not in committed_ids(tmp_path)
    assert prepare_resume(tmp_path) == 2
    assert committed_ids(tmp_path) == {f"x{i}" for i in range(8)}


def test_torn_journal_line_means_not_committed(tmp_path: Path) -> None:
    _sink(tmp_path, 8).close()
    journal = tmp_path / "journal" / "rank-00000.jsonl"
    torn = '{"chunk": "a000001-r00000-c0000002.jsonl", "n": 4, "ids": ["x8"'
    journal.write_text(journal.read_text() + torn)
    assert committed_ids(tmp_path) == {f"x{i}" for i in range(8)}


def test_merge_fails_loudly_on_missing(tmp_path: Path) -> None:
    _sink(tmp_path, 8).close()
    with pytest.raises(MergeError, match=r"2 missing \['x8', 'x9'\]"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(10)])
    assert not (tmp_path / "results.jsonl").exists()


def test_merge_fails_loudly_on_duplicate(tmp_path: Path) -> None:
    _sink(tmp_path, 8).close()
    _sink(tmp_path, 4, rank=1, attempt=2).close()   # x0..x3 again, from another "rank"
    with pytest.raises(MergeError, match=r"4 duplicated \['x0', 'x1', 'x2', 'x3'\]"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(8)])


def test_merge_fails_on_unexpected_and_tampered(tmp_path: Path) -> None:
    _sink(tmp_path, 8).close()
    with pytest.raises(MergeError, match="1 unexpected"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(7)])
    chunk = sorted((tmp_path / "chunks").iterdir())[0]
    chunk.write_text(chunk.read_text().splitlines()[0] + "\n")   # lines lost from a chunk
    with pytest.raises(MergeError, match="does not hold the ids"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(8)])
    chunk.unlink()
    with pytest.raises(MergeError, match="missing from"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(8)])


def test_attempts_and_not_an_output_dir(tmp_path: Path) -> None:
    assert [next_attempt(tmp_path) for _ in range(3)] == [1, 2, 3]
    shutil.rmtree(tmp_path / "attempts")
    with pytest.raises(NotFoundError):
        merge_outputs(tmp_path / "nothing", [])
