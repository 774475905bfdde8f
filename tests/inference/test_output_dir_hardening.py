"""An output directory's journals and dead letters of any size, chunk files that nothing planted can
redirect or overwrite, and a chunks/ directory deleted whole (review of the batch-inference harness)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fabric_hpc import events
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import (ChunkSink, EngineResult, PipelineOptions, VirtualClock, committed_ids,
                                  job_status, merge_job, run_job)
from fabric_hpc.inference.resume import prepare_resume

from .builders import make_config, random_items, read_results, write_spool

PAST_OLD_CAP = 257 << 20  # read_json_lines read a file whole, up to 256 MiB


def _run(cfg: Path, spool: Path, out: Path) -> dict:
    return run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()},
                   options=PipelineOptions(chunk_size=8))


def _sparse_torn_tail(path: Path, size: int) -> None:
    """What a crash can leave at the end of an appended file: its size grown, the data never written
    (NUL bytes, no newline). Sparse: no disk space is used."""
    with path.open("ab") as fh:
        fh.truncate(path.stat().st_size + size)


def test_status_and_merge_read_a_journal_and_dead_letters_past_256_mib(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both files were read whole (at most 256 MiB): past that, status, merge and every resume failed
    and the results were stranded. Now they are read a line at a time, each line bounded."""
    monkeypatch.setattr(events, "MAX_JSON_LINE_BYTES", 1 << 16)
    items = random_items(24, seed=7)
    spool = write_spool(tmp_path, items, files=1, extra_lines=["{broken"])
    cfg, out = make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    for name in ("journal/rank-00000.jsonl", "dead-letter.jsonl"):
        _sparse_torn_tail(out / name, PAST_OLD_CAP)
    status = job_status(out)
    assert (status["done"], status["dead_letter"]) == (24, 1)
    merged = merge_job(out)
    assert (merged["items"], merged["dead_letter"]) == (24, 1)
    assert {r["id"] for r in read_results(out)} == {i["id"] for i in items}


def test_a_line_past_the_line_limit_is_refused_unless_it_is_a_torn_tail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_JSON_LINE_BYTES", 64)
    path = tmp_path / "j.jsonl"
    long = json.dumps({"ids": ["x" * 100]})
    path.write_text('{"a": 1}\n' + long[:-5])  # torn over-long last line: ignored, like any torn line
    assert events.read_json_lines(path) == [{"a": 1}]
    path.write_text('{"a": 1}\n' + long + "\n" + '{"b": 2}\n')
    with pytest.raises(ConfigError, match=r"j.jsonl:2: a line longer than 64 bytes"):
        events.read_json_lines(path)
    path.write_text('{"a": 1}\n{"a": \n{"b": 2}\n')  # damaged in the middle: refused as before
    with pytest.raises(ConfigError, match=r"j.jsonl:2: not a JSON object line"):
        events.read_json_lines(path)


def test_a_damaged_dead_letter_file_fails_merge_before_results_are_written(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(16, seed=8), files=1, extra_lines=["{broken"])
    cfg, out = make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    dead = out / "dead-letter.jsonl"
    dead.write_text("not json\n" + dead.read_text())
    with pytest.raises(ConfigError, match="not a JSON object line"):
        merge_job(out)
    assert not (out / "results.jsonl").exists()


def _result(rid: str) -> EngineResult:
    return EngineResult(rid, [1, 2], "length")


def test_chunks_are_never_written_through_a_planted_link_or_fifo_nor_over_a_chunk(tmp_path: Path) -> None:
    """Chunk temp files had predictable names and were opened with open(..., "wb"): a symbolic link
    planted there (a group-writable --output-mode umask directory) had its target overwritten, a
    FIFO hung the writer, and a commit replaced any committed chunk of the same name."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    chunks = tmp_path / "out" / "chunks"
    chunks.mkdir(parents=True)
    os.symlink(victim, chunks / "a000001-r00000-c0000000.jsonl.tmp")
    os.mkfifo(chunks / "a000001-r00000-c0000001.jsonl.tmp")
    earlier = chunks / "a000001-r00000-c0000003.jsonl"  # a committed chunk of an attempt number reused
    earlier.write_text('{"id":"old","tokens":[9],"finish_reason":"length"}\n')
    sink = ChunkSink(tmp_path / "out", rank=0, attempt=1, chunk_size=2)
    for rid in ("a", "b", "c", "d"):
        if sink.add(_result(rid)):
            sink.commit()
    sink.close()
    assert victim.read_text() == "precious\n"
    assert earlier.read_text().startswith('{"id":"old"')
    journal = (tmp_path / "out" / "journal" / "rank-00000.jsonl").read_text().splitlines()
    names = [json.loads(x)["chunk"] for x in journal]
    assert names == ["a000001-r00000-c0000002.jsonl", "a000001-r00000-c0000004.jsonl"]
    assert committed_ids(tmp_path / "out") == {"a", "b", "c", "d"}
    prepare_resume(tmp_path / "out")  # the planted names are removed (never followed)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in chunks.iterdir()) == names


def test_a_chunks_directory_deleted_whole_needs_one_rerun(tmp_path: Path) -> None:
    """The rerun recomputed everything but kept the journal records of the lost chunks, so merge
    failed until a second rerun."""
    items = random_items(24, seed=9)
    spool, cfg, out = write_spool(tmp_path, items), make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    shutil.rmtree(out / "chunks")
    assert _run(cfg, spool, out)["items_done"] == 24
    assert merge_job(out)["items"] == 24
    assert {r["id"] for r in read_results(out)} == {i["id"] for i in items}
