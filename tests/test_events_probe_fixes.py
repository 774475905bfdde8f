"""Event lines: strict JSON, bounded size, no appending through a link or to a special file."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import (MAX_EVENT_CHARS, JsonLinesFormatter, JsonLinesWriter, make_event,
                               read_json_lines, to_json)


def _strict(text: str) -> dict:
    def no_constants(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=no_constants)


def test_nan_and_infinity_become_null() -> None:
    event = make_event("x", a=math.nan, b=[1.0, math.inf], c={"d": -math.inf}, e=(math.nan,), f={math.nan})
    doc = _strict(to_json(event))
    assert (doc["a"], doc["b"], doc["c"], doc["e"], doc["f"]) == (None, [1.0, None], {"d": None}, [None], [None])


def test_writer_writes_strict_json(tmp_path: Path) -> None:
    with JsonLinesWriter(tmp_path / "e.jsonl") as w:
        w.write(make_event("x", rate=math.nan))
    assert _strict((tmp_path / "e.jsonl").read_text())["rate"] is None


def test_formatter_bounds_a_huge_event() -> None:
    names = [f"entry-{i:05d}.JSONL" for i in range(20_000)]
    event = make_event("infer.spool_ignored", entries=names, count=len(names))
    record = logging.LogRecord("fabric_hpc.events", logging.INFO, __file__, 1, "x", None, None)
    record.event = event
    line = JsonLinesFormatter().format(record)
    assert len(to_json(event)) > 5 * MAX_EVENT_CHARS  # the unbounded line
    assert len(line) <= MAX_EVENT_CHARS
    doc = _strict(line)
    assert doc["event"] == "infer.spool_ignored" and doc["truncated"] is True and doc["count"] == 20_000
    assert doc["entries"]["count"] == 20_000 and doc["entries"]["first"] == names[:10]


def test_small_events_are_not_marked() -> None:
    assert "truncated" not in _strict(to_json(make_event("x", a=[1] * 10), max_chars=MAX_EVENT_CHARS))


def test_bounded_writer_and_unbounded_journal(tmp_path: Path) -> None:
    big = make_event("x", ids=[f"id-{i}" for i in range(50_000)])
    with JsonLinesWriter(tmp_path / "bounded.jsonl", max_line=MAX_EVENT_CHARS) as w:
        w.write(big)
    with JsonLinesWriter(tmp_path / "journal.jsonl") as w:  # a journal record is never cut
        w.write(big)
    assert len((tmp_path / "bounded.jsonl").read_text()) <= MAX_EVENT_CHARS + 1
    assert read_json_lines(tmp_path / "journal.jsonl")[0]["ids"] == big["ids"]


def test_refuses_to_follow_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "metrics" / "rank-00000.jsonl"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link") as err:
        JsonLinesWriter(link)
    assert str(link) in err.value.hint
    assert victim.read_text() == "precious\n"


def test_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "e.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        JsonLinesWriter(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # with a reader the open succeeds: still refused
    try:
        with pytest.raises(ConfigError, match="not a regular file"):
            JsonLinesWriter(fifo)
    finally:
        os.close(reader)


def test_cut_torn_tail_refuses_a_symlink(tmp_path: Path) -> None:
    from fabric_hpc.events import cut_torn_tail

    victim = tmp_path / "victim"
    victim.write_text("line\ntail without newline")
    link = tmp_path / "rank-00000.jsonl"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        cut_torn_tail(link)
    assert victim.read_text() == "line\ntail without newline"
    assert cut_torn_tail(tmp_path / "absent.jsonl") == 0
