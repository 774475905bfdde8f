"""--chunk-size (and PipelineOptions.chunk_size) had no upper bound: a chunk's journal record lists all its
ids and digests, so a large chunk of long ids could commit a record over the readers' line limit
(MAX_JSON_LINE_BYTES), refused for good on resume and merge. It is capped at MAX_CHUNK_SIZE, which keeps
the worst record (512-char ids, each char a 12-byte JSON escape) under a quarter of that limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import MAX_JSON_LINE_BYTES, to_json
from fabric_hpc.inference.pipeline import MAX_CHUNK_SIZE, PipelineOptions

from .builders import make_config, random_items, write_spool


def _record(n: int) -> str:
    """A chunk's journal record (as ChunkSink.commit writes it) of ``n`` worst-case ids."""
    ids = [f"{i:06d}" + "\U0001F600" * 506 for i in range(n)]
    return to_json({"chunk": "a000001-r00000-c0000000.jsonl", "n": n, "ids": ids, "digests": ["f" * 16] * n})


def test_the_largest_chunk_keeps_its_journal_record_far_below_the_line_limit() -> None:
    one, per_id = len(_record(1)), (len(_record(101)) - len(_record(1))) / 100  # the length is linear in n
    assert one + per_id * (MAX_CHUNK_SIZE - 1) < MAX_JSON_LINE_BYTES / 4


def test_pipeline_options_refuse_a_chunk_size_over_the_cap() -> None:
    assert PipelineOptions(chunk_size=MAX_CHUNK_SIZE).chunk_size == MAX_CHUNK_SIZE
    with pytest.raises(ConfigError, match=rf"chunk_size is {MAX_CHUNK_SIZE + 1}: it must be an integer in "
                                          rf"1\.\.{MAX_CHUNK_SIZE}"):
        PipelineOptions(chunk_size=MAX_CHUNK_SIZE + 1)


def test_chunk_size_over_the_cap_is_a_usage_error(tmp_path: Path, capsys) -> None:
    cfg, spool = make_config(tmp_path), write_spool(tmp_path, random_items(2), files=1)
    code = main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                 str(tmp_path / "out"), "--no-progress", "--chunk-size", str(MAX_CHUNK_SIZE + 1)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--chunk-size': {MAX_CHUNK_SIZE + 1} is over {MAX_CHUNK_SIZE}" in err
    assert not (tmp_path / "out" / "journal").exists()
    assert main(["infer", "run", "--help"]) == 0
    assert f"(at most {MAX_CHUNK_SIZE})" in " ".join(capsys.readouterr().out.split())
