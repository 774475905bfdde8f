"""Exactly-once storage: atomic chunks, fsync'd journal, resume skip-set, loud merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.inference import ChunkSink, EngineResult, MergeError, committed_ids, merge_outputs
from fabric_hpc.inference.journal import next_attempt
from fabric_hpc.inference.resume import prepare_resume


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


def test_merge_keeps_results_without_input_and_fails_on_tampered(tmp_path: Path) -> None:
    _sink(tmp_path, 8).close()
    # the input lost an id (its spool file removed after it ran): its result is kept and counted
    res = merge_outputs(tmp_path, [f"x{i}" for i in range(7)])
    assert (res["items"], res["without_input"], res["without_input_ids"]) == (8, 1, ["x7"])
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


def test_resume_keeps_the_first_copy_of_a_duplicated_id(tmp_path: Path) -> None:
    from fabric_hpc.inference.resume import dedupe_chunks

    _sink(tmp_path, 8).close()
    _sink(tmp_path, 8, rank=1, attempt=2).close()   # x0..x7 again, from another "rank"
    with pytest.raises(MergeError, match=r"8 duplicated \['x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6'"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(8)])
    first = (tmp_path / "chunks" / "a000001-r00000-c0000000.jsonl").read_bytes()
    prepare_resume(tmp_path)                        # what a rerun does first
    assert dedupe_chunks(tmp_path) == []            # nothing left to repair
    res = merge_outputs(tmp_path, [f"x{i}" for i in range(8)])
    assert res["items"] == 8
    assert (tmp_path / "chunks" / "a000001-r00000-c0000000.jsonl").read_bytes() == first
    rank1 = [json.loads(x) for x in (tmp_path / "journal" / "rank-00001.jsonl").read_text().split()]
    assert rank1 == []                               # both of rank 1's chunks were all duplicates
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == [
        "a000001-r00000-c0000000.jsonl", "a000001-r00000-c0000001.jsonl"]


def test_dedupe_rewrites_a_partly_duplicated_chunk(tmp_path: Path) -> None:
    _sink(tmp_path, 4).close()                       # x0..x3 on rank 0
    sink = ChunkSink(tmp_path, rank=1, attempt=2, chunk_size=4)
    for i in (2, 3, 4, 5):                           # x2, x3 again, x4, x5 new
        sink.add(EngineResult(f"x{i}", [100 + i]))
    sink.commit()
    sink.close()
    prepare_resume(tmp_path)
    res = merge_outputs(tmp_path, [f"x{i}" for i in range(6)])
    lines = [json.loads(x) for x in Path(res["results"]).read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == [f"x{i}" for i in range(6)]
    tokens = {r["id"]: r["tokens"] for r in lines}
    assert tokens["x3"] == [3, 4] and tokens["x4"] == [104]   # the first copy kept
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == [
        "a000001-r00000-c0000000.jsonl", "a000002-r00001-c0000000-d1.jsonl"]


@pytest.mark.parametrize("tail", [b'{"id":"b1","tokens":[1', b"\xff\xfe\n", b'{"no_id": 1}\n'])
def test_merge_names_a_damaged_chunk_line(tmp_path: Path, tail: bytes) -> None:
    """A committed chunk damaged afterwards (a torn or non-UTF-8 line) is a MergeError naming the
    chunk and line, not a JSONDecodeError traceback."""
    _sink(tmp_path, 8).close()
    chunk = sorted((tmp_path / "chunks").iterdir())[0]
    chunk.write_bytes(chunk.read_bytes() + tail)
    with pytest.raises(MergeError, match=rf"chunk {chunk.name} line 5 is not a result"):
        merge_outputs(tmp_path, [f"x{i}" for i in range(8)])


def test_run_refuses_an_output_that_overlaps_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_text('{"id": "a", "prompt": [1, 2], "max_new_tokens": 2}\n')
    cfg = tmp_path / "engine.json"
    cfg.write_text("{}")
    for output in (spool, spool / "out", tmp_path):
        assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(output)]) == 3
        assert "overlap" in capsys.readouterr().err
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool),
                 "--output", str(tmp_path / "no" / "out")]) == 3
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert sorted(p.name for p in spool.iterdir()) == ["a.jsonl"]


def test_cut_torn_tail_keeps_whole_lines_only(tmp_path: Path) -> None:
    from fabric_hpc.events import cut_torn_tail

    path = tmp_path / "j.jsonl"
    assert cut_torn_tail(path) == 0                       # no file: nothing to do
    path.write_bytes(b'{"a":1}\n{"b":2}\n')
    assert cut_torn_tail(path) == 0 and path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    path.write_bytes(b'{"a":1}\n{"b":')
    assert cut_torn_tail(path) == 5 and path.read_bytes() == b'{"a":1}\n'
    path.write_bytes(b"x" * 70000)                        # no newline at all: a single torn record
    assert cut_torn_tail(path) == 70000 and path.read_bytes() == b""
