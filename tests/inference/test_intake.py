"""Work intake: malformed lines go to the dead-letter file with the reason; the run continues."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.events import read_json_lines
from fabric_hpc.inference import DeadLetter, parse_item, read_items
from fabric_hpc.inference.intake import IntakeRejection
from fabric_hpc.inference.spool import spool_files, spool_lines, stream_lines

from .builders import SMALL

BAD = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"prompt": [1], "max_new_tokens": 2}', "missing required keys ['id']"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2, "temperature": 1}', "unknown keys"),
    ('{"id": "", "prompt": [1], "max_new_tokens": 2}', "id must be"),
    ('{"id": 7, "prompt": [1], "max_new_tokens": 2}', "id must be"),
    ('{"id": "a", "prompt": [], "max_new_tokens": 2}', "non-empty list"),
    ('{"id": "a", "prompt": "hello", "max_new_tokens": 2}', "this reader has no tokenizer"),
    ('{"id": "a", "prompt": [1, -2], "max_new_tokens": 2}', "non-negative integers"),
    ('{"id": "a", "prompt": [1, 2.5], "max_new_tokens": 2}', "non-negative integers"),
    ('{"id": "a", "prompt": [true], "max_new_tokens": 2}', "non-negative integers"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 0}', "max_new_tokens must be"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2, "priority": "high"}', "priority"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2, "class": 3}', "class must be"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2, "id": "b"}', "key 'id' appears twice in one object"),
    ('{"id": "b\\ud800", "prompt": [1], "max_new_tokens": 2}', "id is not valid Unicode: a lone surrogate"),
    ('{"id": "b", "prompt": [1], "max_new_tokens": 2, "class": "\\udc00x"}', "class is not valid Unicode"),
    (json.dumps({"id": "a", "prompt": [1] * 129, "max_new_tokens": 2}), "max_input_len"),
    (json.dumps({"id": "a", "prompt": [1] * 100, "max_new_tokens": 100}), "max_seq_len"),
]


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2}'.encode("utf-16"),
     "not UTF-8 (starts with a UTF-16 byte-order mark)"),
    ('{"id": "a", "prompt": [1], "max_new_tokens": 2}'.encode("utf-16-be"), "not UTF-8 text (it holds NUL bytes"),
    (b'{"id": "caf\xe9", "prompt": [1], "max_new_tokens": 2}', "not UTF-8 (byte 0xe9 at offset 11"),
])
def test_a_line_that_is_not_utf8_says_so(raw: bytes, reason: str) -> None:
    """A UTF-16 line (BOM) was dead-lettered as "'utf-16-le' codec can't decode"."""
    with pytest.raises(IntakeRejection, match=re.escape(reason)):
        parse_item(raw, SMALL)


def test_a_utf8_bom_is_accepted() -> None:
    assert parse_item(b'\xef\xbb\xbf{"id": "a", "prompt": [1], "max_new_tokens": 2}', SMALL).id == "a"


@pytest.mark.parametrize("line,reason", BAD)
def test_malformed_line_rejected_with_reason(line: str, reason: str) -> None:
    with pytest.raises(IntakeRejection, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_item(line, SMALL)


def test_good_line() -> None:
    it = parse_item('{"id": "a", "prompt": [5, 6, 7], "max_new_tokens": 4, "priority": 2, '
                    '"class": "chat"}', SMALL)
    assert (it.id, it.length, it.cost, it.priority, it.klass) == ("a", 3, 7, 2, "chat")


def test_dead_letter_file_and_run_continues(tmp_path: Path) -> None:
    good = [json.dumps({"id": f"g{i}", "prompt": [1, 2], "max_new_tokens": 1}) for i in range(3)]
    lines = [good[0], BAD[0][0], good[1], good[1], BAD[8][0], good[2]]
    stream = io.BytesIO(("\n".join(lines) + "\n\n").encode())
    dead = DeadLetter(tmp_path / "dl.jsonl")
    items = list(read_items(stream_lines(stream), limits=SMALL, dead_letter=dead))
    dead.close()
    assert [it.id for it in items] == ["g0", "g1", "g2"]
    records = read_json_lines(tmp_path / "dl.jsonl")
    assert [r["line"] for r in records] == [2, 4, 5]
    assert "not valid JSON" in records[0]["reason"]
    assert "duplicate id 'g1'" in records[1]["reason"]
    assert records[2]["raw"].startswith('{"id": "a"')


def test_skip_set_is_silent(tmp_path: Path) -> None:
    lines = [("f", i, json.dumps({"id": f"g{i}", "prompt": [1], "max_new_tokens": 1}))
             for i in range(4)]
    dead = DeadLetter(None)
    items = list(read_items(lines, limits=SMALL, dead_letter=dead, skip={"g1", "g3"}))
    assert [it.id for it in items] == ["g0", "g2"] and dead.count == 0


def test_a_duplicate_of_an_id_done_earlier_does_not_claim_its_first_copy_was_kept(tmp_path: Path) -> None:
    """A later spool file repeating an id finished by an earlier attempt: neither copy runs, and
    the dead letter says the earlier attempt's result is kept (not "first occurrence kept", which
    named the wrong line)."""
    item = {"prompt": [1], "max_new_tokens": 1}
    lines = [("b.jsonl", 1, json.dumps({"id": "i5", **item})), ("items.jsonl", 6, json.dumps({"id": "i5", **item})),
             ("items.jsonl", 7, json.dumps({"id": "j", **item})), ("items.jsonl", 8, json.dumps({"id": "j", **item}))]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    items = list(read_items(lines, limits=SMALL, dead_letter=dead, skip={"i5"}))
    dead.close()
    assert [it.id for it in items] == ["j"]
    reasons = [r["reason"] for r in read_json_lines(tmp_path / "dead.jsonl")]
    assert "committed by an earlier attempt and is kept" in reasons[0] and "first occurrence kept" in reasons[1]


def test_spool_reads_only_jsonl_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_text('{"x":1}\n\n{"x":2}\n')
    (tmp_path / "a.jsonl").write_text('{"x":0}\n')
    (tmp_path / "c.jsonl.tmp").write_text("partial")
    assert [p.name for p in spool_files(tmp_path)] == ["a.jsonl", "b.jsonl"]
    assert [(s, n) for s, n, _ in spool_lines(tmp_path)] == [("a.jsonl", 1), ("b.jsonl", 1),
                                                              ("b.jsonl", 3)]
    with pytest.raises(NotFoundError):
        spool_files(tmp_path / "missing")


POISON = [
    "[" * 100_000,                                                    # RecursionError in json
    '{"id": "a", "prompt": [1], "max_new_tokens": ' + "9" * 5000 + "}",  # int too long to parse
    '{"id": "a", "prompt": [1], "max_new_tokens": 1e999}',           # inf float
    '{"id": "a", "prompt": [' + "9" * 40 + '], "max_new_tokens": 2}',  # huge token id
    '{"id": "a", "prompt": [1], "max_new_tokens": 99999999999999}',  # huge generation
    '{"id": "a", "prompt": [1], "max_new_tokens": 2, "priority": 1e5}',
    '{"id": "a", "prompt": [1], "max_new_tokens": 2, "class": ["x"]}',
    '{"id": {"nested": ' * 5000 + "1" + "}" * 5000 + ', "prompt": [1], "max_new_tokens": 2}',
    '"just a string"', "null", "\udcff" * 3, "\x00\x01",
]


def test_poisoned_items_are_dead_lettered_with_bounded_reasons(tmp_path: Path) -> None:
    good = json.dumps({"id": "ok", "prompt": [1, 2], "max_new_tokens": 1})
    lines = [("f", n, raw.encode("utf-8", "surrogateescape")) for n, raw in enumerate(POISON, 1)]
    lines.append(("f", len(POISON) + 1, good.encode()))
    dead = DeadLetter(tmp_path / "dl.jsonl")
    items = list(read_items(lines, limits=SMALL, dead_letter=dead))
    dead.close()
    assert [it.id for it in items] == ["ok"]
    records = read_json_lines(tmp_path / "dl.jsonl")
    assert [r["line"] for r in records] == list(range(1, len(POISON) + 1))
    assert all(0 < len(r["reason"]) <= 500 and len(r["raw"]) <= 2000 for r in records)
    assert "RecursionError" in records[0]["reason"]


def test_over_long_line_is_cut_and_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fabric_hpc.inference import intake, spool

    monkeypatch.setattr(spool, "MAX_LINE_BYTES", 64)  # where lines are cut
    monkeypatch.setattr(intake, "MAX_LINE_BYTES", 64)  # the reason that names the limit
    ok = json.dumps({"id": "ok", "prompt": [1], "max_new_tokens": 1})
    padded = json.dumps({"id": "pad", "prompt": [1], "max_new_tokens": 1}) + " " * 200  # valid in its first 64 bytes
    (tmp_path / "a.jsonl").write_text('{"id": "long", "prompt": [' + "1, " * 100 + '1], '
                                      '"max_new_tokens": 1}\n' + ok + "\n" + padded + "\n")
    dead = DeadLetter(tmp_path / "dead.jsonl")
    items = list(read_items(spool_lines(tmp_path), limits=SMALL, dead_letter=dead))
    dead.close()
    assert [it.id for it in items] == ["ok"] and dead.count == 2
    reasons = [r["reason"] for r in read_json_lines(tmp_path / "dead.jsonl")]
    assert reasons == ["line longer than 64 bytes (the limit of one work item)"] * 2


def test_snapshot_reads_recorded_files_and_sizes_only(tmp_path: Path) -> None:
    from fabric_hpc.errors import ExternalError
    from fabric_hpc.inference.spool import snapshot_lines, spool_snapshot

    (tmp_path / "a.jsonl").write_text('{"x":0}\n')
    snap = spool_snapshot(tmp_path)
    assert [(f["name"], f["size"]) for f in snap["files"]] == [("a.jsonl", 8)]
    (tmp_path / "b.jsonl").write_text('{"x":1}\n')                # arrives later: next run
    with (tmp_path / "a.jsonl").open("a") as fh:                  # appended: not seen either
        fh.write('{"x":2}\n')
    assert [raw for _, _, raw in snapshot_lines(snap)] == [b'{"x":0}\n']
    (tmp_path / "new").write_text('{"x":9}\n')
    (tmp_path / "new").rename(tmp_path / "a.jsonl")               # replaced under the run
    with pytest.raises(ExternalError, match="replaced or truncated"):
        list(snapshot_lines(snap))
    (tmp_path / "a.jsonl").unlink()
    with pytest.raises(ExternalError, match="vanished"):
        list(snapshot_lines(snap))


@pytest.mark.parametrize("doc", [
    "not json", [], {"spool": "s"}, {"spool": "s", "files": [{"name": "../etc/passwd", "size": 1, "ino": 1}]},
    {"spool": "s", "files": [{"name": "a.jsonl", "size": -1, "ino": 1}]},
    {"spool": "s", "files": [{"name": "a.jsonl", "size": True, "ino": 1}]},
])
def test_damaged_snapshot_is_refused_before_use(tmp_path: Path, doc: object) -> None:
    """A snapshot file is re-read by merge: damaged or edited, it is a ConfigError, and a name that is
    not a plain file name (``../etc/passwd``) never reaches the reader."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inference.spool import load_snapshot, spool_snapshot

    path = tmp_path / "snap.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ConfigError):
        load_snapshot(path)
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "a.jsonl").write_text('{"id": "1"}\n')
    path.write_text(json.dumps(spool_snapshot(tmp_path / "spool")))
    assert load_snapshot(path)["files"][0]["name"] == "a.jsonl"
