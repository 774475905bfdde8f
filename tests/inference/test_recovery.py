"""Output directories damaged between attempts (a full disk, a lost file, a typo) recover on rerun."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.inference import PipelineOptions, VirtualClock, job_status, merge_job, run_job

from .builders import make_config, random_items, read_results, write_spool


def _run(cfg: Path, spool: Path, out: Path, chunk_size: int = 8) -> dict:
    return run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()},
                   options=PipelineOptions(chunk_size=chunk_size))


def test_a_torn_journal_tail_is_cut_before_the_rerun_appends(tmp_path: Path) -> None:
    """A write cut short (full disk) leaves a partial last journal record; the rerun cuts it off
    instead of gluing its first record onto it, so status and merge keep working."""
    items = random_items(40, seed=3)
    spool, cfg, out = write_spool(tmp_path, items[:20], files=1), make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    journal = out / "journal" / "rank-00000.jsonl"
    with journal.open("a") as fh:
        fh.write('{"chunk":"a000001-r00000-c0000009.jsonl","n":4,"ids":["i1')
    metrics = out / "metrics" / "rank-00000.jsonl"
    with metrics.open("a") as fh:
        fh.write('{"ts":1')
    (spool / "more.jsonl").write_text("".join(__import__("json").dumps(i) + "\n" for i in items[20:]))
    assert _run(cfg, spool, out)["items_done"] == 20
    assert journal.read_bytes().endswith(b"\n") and metrics.read_bytes().endswith(b"\n")
    assert job_status(out)["done"] == 40
    merge_job(out)
    assert {r["id"] for r in read_results(out)} == {i["id"] for i in items}


def test_a_lost_chunk_is_recomputed_by_the_rerun_and_merge_then_succeeds(tmp_path: Path) -> None:
    items = random_items(40, seed=6)
    spool, cfg, out = write_spool(tmp_path, items), make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    lost = sorted((out / "chunks").glob("*.jsonl"))[1]
    lost_ids = {__import__("json").loads(x)["id"] for x in lost.read_text().splitlines()}
    lost.unlink()
    res = _run(cfg, spool, out)
    assert res["items_done"] == len(lost_ids) == 8 and res["resumed"] == 32
    assert lost.name not in (out / "journal" / "rank-00000.jsonl").read_text()
    merge_job(out)
    assert sorted(r["id"] for r in read_results(out)) == sorted(i["id"] for i in items)


def test_a_mistyped_input_leaves_the_output_free_for_the_right_one(tmp_path: Path) -> None:
    """The input is checked before run.json is written: a typo used to tie the output to it."""
    import pytest

    from fabric_hpc.errors import ConfigError, NotFoundError

    spool, cfg, out = write_spool(tmp_path, random_items(12)), make_config(tmp_path), tmp_path / "out"
    with pytest.raises(NotFoundError, match="does not exist"):
        _run(cfg, tmp_path / "spoool", out)
    assert not (out / "run.json").exists()
    assert _run(cfg, spool, out)["items_done"] == 12
    other = write_spool(tmp_path / "b", random_items(3))
    with pytest.raises(ConfigError, match=rf"different input \('{spool}' then, '{other}' now\)"):
        _run(cfg, other, out)


def test_a_spool_without_jsonl_files_is_an_error_naming_what_it_ignored(tmp_path: Path) -> None:
    import pytest

    from fabric_hpc.errors import ConfigError

    spool, cfg = tmp_path / "spool", make_config(tmp_path)
    spool.mkdir()
    with pytest.raises(ConfigError, match="has no \\*.jsonl file to read: it is empty"):
        _run(cfg, spool, tmp_path / "out")
    for name in ("a.jsonl.tmp", "b.json", "c.JSONL"):
        (spool / name).write_text('{"id": "x", "prompt": [1], "max_new_tokens": 1}\n')
    with pytest.raises(ConfigError, match="only 'a.jsonl.tmp', 'b.json', 'c.JSONL', which are ignored") as info:
        _run(cfg, spool, tmp_path / "out")
    assert "rename it to NAME.jsonl" in (info.value.hint or "")
    assert not (tmp_path / "out" / "run.json").exists()


def test_status_shows_only_the_latest_attempts_ranks(tmp_path: Path) -> None:
    """After a 2-rank attempt and a 1-rank rerun, rank 1's last record (and its .prom file) is
    the earlier attempt's: status does not list it as the latest, and it is no longer exported."""
    import json

    items = random_items(30, seed=8)
    spool, cfg, out = write_spool(tmp_path, items[:20]), make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool, out)
    mdir = out / "metrics"  # what a second rank of attempt 1 left behind
    last = json.loads((mdir / "rank-00000.jsonl").read_text().splitlines()[-1])
    (mdir / "rank-00001.jsonl").write_text(json.dumps({**last, "rank": 1, "attempt": 1}) + "\n")
    (mdir / "rank-00001.prom").write_text((mdir / "rank-00000.prom").read_text())
    (spool / "more.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[20:]))
    _run(cfg, spool, out)
    st = job_status(out)
    assert list(st["ranks"]) == ["rank-00000"] and st["latest_attempt"] == 2
    assert st["ranks"]["rank-00000"]["attempt"] == 2 and st["ranks"]["rank-00000"]["items_done"] == 10
    assert sorted(p.name for p in mdir.glob("*.prom")) == ["rank-00000.prom"]
