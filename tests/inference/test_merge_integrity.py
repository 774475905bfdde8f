"""Merge and rerun keep results and prompts paired (prober 3): merge compares the journalled digests
(before: ids only, "ok" with prompts that changed), a new spool line reusing a committed id is a
dead-lettered repeat (before: every rerun refused), a damaged committed chunk is recomputed by a rerun
(before: merge failed without a fix and the rerun skipped it), and a rerun that commits nothing keeps a
complete results.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.cli.main import main

from .builders import make_config, random_items, write_spool


def _run(cfg: Path, spool: Path, out: Path, *extra: str) -> int:
    return main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress", "--chunk-size", "4", *extra])


def _lines(items: list[dict]) -> str:
    return "".join(json.dumps(i) + "\n" for i in items)


def test_merge_refuses_an_input_rewritten_in_place_with_new_prompts(tmp_path: Path, capsys) -> None:
    items = random_items(10, seed=3, max_new=8)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    data = tmp_path / "data.jsonl"
    data.write_text(_lines(items))
    assert _run(cfg, data, out) == 0
    changed = [dict(i, prompt=[7, 7, 7] + i["prompt"]) if k in (2, 5) else i for k, i in enumerate(items)]
    data.write_text(_lines(changed))  # same ids, other prompts, longer file: same inode
    capsys.readouterr()
    assert main(["infer", "merge", str(out)]) == 3
    err = capsys.readouterr().err
    assert "2 items changed" in err and "'i2' (data.jsonl:3)" in err and "'i5' (data.jsonl:6)" in err, err
    assert "fix: " in err and "new --output" in err, err
    assert not (out / "results.jsonl").exists()


def test_merge_refuses_another_input_with_the_same_ids_and_other_prompts(tmp_path: Path, capsys) -> None:
    items = random_items(6, seed=4, max_new=8)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    data, data2 = tmp_path / "data.jsonl", tmp_path / "data2.jsonl"
    data.write_text(_lines(items))
    data2.write_text(_lines([dict(i, max_new_tokens=i["max_new_tokens"] + 1) for i in items]))
    assert _run(cfg, data, out) == 0
    capsys.readouterr()
    assert main(["infer", "merge", str(out), "--input", str(data2)]) == 3
    assert "6 items changed" in capsys.readouterr().err
    assert main(["infer", "merge", str(out), "--input", str(data)]) == 0  # the same content: ok


def test_a_new_spool_file_reusing_a_committed_id_is_dead_lettered_not_blocking(tmp_path: Path,
                                                                               capsys) -> None:
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "b.jsonl").write_text(_lines([{"id": "x", "prompt": [1, 2, 3], "max_new_tokens": 4},
                                           {"id": "y", "prompt": [4, 5], "max_new_tokens": 4}]))
    assert _run(cfg, spool, out) == 0
    (spool / "a.jsonl").write_text(_lines([{"id": "x", "prompt": [9, 9], "max_new_tokens": 4},
                                           {"id": "z", "prompt": [6], "max_new_tokens": 4}]))
    capsys.readouterr()
    assert _run(cfg, spool, out, "--max-rejected", "100%") == 0, capsys.readouterr().err
    dead = [json.loads(line) for line in (out / "dead-letter.jsonl").read_text().splitlines()]
    assert [(d["source"], d["line"]) for d in dead] == [("a.jsonl", 1)]
    assert "duplicate id 'x'" in dead[0]["reason"] and "b.jsonl:1" in dead[0]["reason"], dead
    assert main(["infer", "merge", str(out)]) == 0
    got = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert got == ["z", "x", "y"]  # input order: a.jsonl's new z, then b.jsonl (x kept from there)
    # the committed line itself changed in place: still refused, naming it
    (spool / "b.jsonl").write_text(_lines([{"id": "x", "prompt": [1, 2, 4], "max_new_tokens": 4},
                                           {"id": "y", "prompt": [4, 5], "max_new_tokens": 4}]))
    capsys.readouterr()
    assert _run(cfg, spool, out, "--max-rejected", "100%") == 3
    assert "changed since an earlier attempt" in capsys.readouterr().err


def test_a_damaged_chunk_is_recomputed_by_a_rerun_and_merge_names_that_fix(tmp_path: Path, capsys) -> None:
    items = random_items(20, seed=5, max_new=8)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = write_spool(tmp_path, items, files=1)
    assert _run(cfg, spool, out) == 0
    chunk = sorted((out / "chunks").glob("*.jsonl"))[1]
    chunk.write_bytes(chunk.read_bytes()[:-40])  # truncated: its last line is cut
    capsys.readouterr()
    assert main(["infer", "merge", str(out)]) == 5
    err = capsys.readouterr().err
    assert chunk.name in err and "fix: " in err and "rerun `fabric infer run`" in err, err
    assert _run(cfg, spool, out, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["items_done_all_ranks"] == 4 and doc["resumed"] == 16, doc
    assert main(["infer", "merge", str(out)]) == 0
    got = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert got == [i["id"] for i in items]


def test_a_rerun_that_commits_nothing_keeps_a_complete_merge(tmp_path: Path, capsys) -> None:
    items = random_items(8, seed=6, max_new=8)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = write_spool(tmp_path, items, files=1)
    assert _run(cfg, spool, out) == 0 and main(["infer", "merge", str(out)]) == 0
    before = (out / "results.jsonl").read_bytes()
    assert _run(cfg, spool, out) == 0
    assert (out / "results.jsonl").read_bytes() == before
    # a rerun that commits more makes it stale: removed
    (spool / "part-001.jsonl").write_text(_lines(random_items(3, seed=7, max_new=8, prefix="n")))
    assert _run(cfg, spool, out) == 0
    assert not (out / "results.jsonl").exists()


def test_merge_digest_check_ignores_journals_without_digests(tmp_path: Path) -> None:
    """A journal written before digests were recorded merges unchecked, as it resumes unchecked."""
    items = random_items(6, seed=8, max_new=8)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = write_spool(tmp_path, items, files=1)
    assert _run(cfg, spool, out) == 0
    journal = out / "journal" / "rank-00000.jsonl"
    recs = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "digests"}) + "\n"
                               for r in recs))
    changed = [dict(i, max_new_tokens=i["max_new_tokens"] + 1) for i in items]
    (spool / "part-000.jsonl").write_text(_lines(changed))
    assert main(["infer", "merge", str(out)]) == 0
