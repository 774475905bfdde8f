"""Defects a vLLM offline-batch user met (changed items, foreign output folders, options, order,
dead letters, compressed input, vLLM field names), each pinned by a test."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import VirtualClock, job_status, merge_job, run_job
from fabric_hpc.inference.pipeline import MAX_OVERCOMMIT, PipelineOptions

from .builders import make_config, random_items, read_results, write_spool

REPO = Path(__file__).resolve().parents[2]


def _fabric(*args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _run(cfg: Path, spool: Path | str, out: Path, chunk_size: int = 8) -> dict:
    return run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()},
                   options=PipelineOptions(chunk_size=chunk_size))


@pytest.mark.parametrize("field,value", [
    ("max_drain_batches", 0), ("admit_queue", 0), ("done_queue", 0), ("admit_batch", 0),
    ("admit_batch", -1), ("chunk_size", 0), ("chunk_size", -5), ("chunk_size", True),
    ("flush_interval_s", math.nan), ("flush_interval_s", -1), ("overcommit", math.nan),
    ("overcommit", math.inf), ("overcommit", "2"), ("overcommit", 1e30), ("overcommit", 0.5),
    ("low_fraction", 1.0), ("switch_interval_s", 0.0),
])
def test_pipeline_options_are_checked_at_construction(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"PipelineOptions.{field} is") as err:
        PipelineOptions(**{field: value})
    assert "leave it out for the default" in err.value.hint


def test_pipeline_options_accept_their_whole_range() -> None:
    opts = PipelineOptions(overcommit=MAX_OVERCOMMIT, admit_batch=1, flush_interval_s=0,
                           switch_interval_s=None)
    assert opts.overcommit == 16.0
    assert PipelineOptions(overcommit=1).overcommit == 1


def test_a_non_empty_output_folder_without_run_json_is_refused_by_the_cli(tmp_path: Path) -> None:
    """Before: the run started and its resume cleanup unlinked udir/chunks/mydata.jsonl."""
    cfg, spool = make_config(tmp_path), write_spool(tmp_path, random_items(10), files=1)
    (tmp_path / "udir" / "chunks").mkdir(parents=True)
    (tmp_path / "udir" / "chunks" / "mydata.jsonl").write_text("important\n")
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                   str(tmp_path / "udir"), "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "is not empty and holds no fabric run (no run.json): 'chunks'" in proc.stderr
    assert (tmp_path / "udir" / "chunks" / "mydata.jsonl").read_text() == "important\n"
    assert not (tmp_path / "udir" / "run.json").exists()


def test_resume_cleanup_never_deletes_files_the_run_did_not_create(tmp_path: Path) -> None:
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, random_items(20), files=1), tmp_path / "o"
    _run(cfg, spool, out)  # (a folder no run wrote is refused whole: test_job_totals.py)
    (out / "chunks" / "mydata.jsonl").write_text("important\n")
    (out / "chunks" / "a000009-r00000-c0000001.jsonl.tmp").write_text("torn")  # an orphan of ours
    _run(cfg, spool, out)
    assert (out / "chunks" / "mydata.jsonl").read_text() == "important\n"
    assert not (out / "chunks" / "a000009-r00000-c0000001.jsonl.tmp").exists()
    merge_job(out)
    assert len(read_results(out)) == 20


def test_a_gzipped_input_is_one_clear_error_before_the_output_is_touched(tmp_path: Path) -> None:
    """Before: "not UTF-8 (UTF-16/32?)" per line, then "every item dead-lettered ... max_input_len"."""
    import gzip

    cfg, items = make_config(tmp_path), random_items(5)
    data = tmp_path / "items.jsonl"
    data.write_bytes(gzip.compress("".join(json.dumps(i) + "\n" for i in items).encode()))
    with pytest.raises(ConfigError, match="is gzip-compressed") as err:
        _run(cfg, data, tmp_path / "out")
    assert "gunzip" in err.value.hint and not (tmp_path / "out").exists()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl.gz").write_bytes(data.read_bytes())
    with pytest.raises(ConfigError, match=r"'a.jsonl.gz' \(compressed: decompress it first"):
        _run(cfg, spool, tmp_path / "out2")


def test_vllm_field_names_are_accepted_and_a_text_prompt_says_how_to_tokenise() -> None:
    from fabric_hpc.inference.intake import IntakeRejection, parse_item

    item = parse_item('{"id": "v", "prompt_token_ids": [3, 4], "max_tokens": 5}')
    assert (item.prompt, item.max_new_tokens) == ([3, 4], 5)
    with pytest.raises(IntakeRejection, match="both 'max_new_tokens' and its vLLM name 'max_tokens'"):
        parse_item('{"id": "v", "prompt": [3], "max_tokens": 5, "max_new_tokens": 5}')
    with pytest.raises(IntakeRejection, match=r"no tokenizer.*list of token ids"):
        parse_item('{"id": "v", "prompt": "Hello there", "max_tokens": 5}')


def test_a_huge_number_and_a_duplicate_id_have_user_facing_reasons(tmp_path: Path) -> None:
    from fabric_hpc.inference.intake import DeadLetter, IntakeRejection, parse_item, read_items

    with pytest.raises(IntakeRejection, match="a number has more than 4,300 digits") as err:
        parse_item('{"id": "n", "prompt": [1], "max_new_tokens": 1' + "0" * 5000 + "}")
    assert "set_int_max_str_digits" not in str(err.value)
    line = json.dumps({"id": "d", "prompt": [1], "max_new_tokens": 1})
    dead = DeadLetter(tmp_path / "dead.jsonl")
    kept = list(read_items([("a.jsonl", 3, line), ("b.jsonl", 9, line)], limits=None, dead_letter=dead))
    assert len(kept) == 1
    dead.close()
    assert "first occurrence kept: a.jsonl:3" in json.loads((tmp_path / "dead.jsonl").read_text())["reason"]


def test_an_item_changed_under_the_same_id_is_refused_on_resume(tmp_path: Path) -> None:
    """Before: the rerun said "30 skipped as already done" and merge kept the old answer."""
    from fabric_hpc.inference.intake import InputChanged

    items = random_items(30, seed=4)
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, items, files=1), tmp_path / "out"
    _run(cfg, spool, out)
    assert _run(cfg, spool, out)["resumed"] == 30  # unchanged: resumes as before
    items[7]["max_new_tokens"] += 1
    (spool / "part-000.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    with pytest.raises(InputChanged, match=r"item 'i7' \(part-000.jsonl:8\) changed since an earlier") as err:
        _run(cfg, spool, out)
    assert err.value.exit_code == 3 and "new --output" in err.value.hint
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                   "--no-progress")
    assert proc.returncode == 3 and "changed since an earlier attempt" in proc.stderr, proc.stderr


def test_merge_writes_results_in_input_order(tmp_path: Path) -> None:
    """Before: results.jsonl held the commit (completion) order, which changes with the number of ranks."""
    items = random_items(120, seed=11)
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, items, files=3), tmp_path / "out"
    _run(cfg, spool, out)
    committed = [json.loads(line)["id"] for chunk in sorted((out / "chunks").iterdir())
                 for line in chunk.read_text().splitlines()]
    assert committed != [i["id"] for i in items]  # the engine finishes them out of order
    res = merge_job(out)
    assert res["order"] == "input" and res["without_input"] == 0
    results = read_results(out)
    assert [r["id"] for r in results] == [i["id"] for i in items]
    from fabric_hpc.inference.journal import merge_outputs

    merge_outputs(out, [i["id"] for i in items], order="completion")
    assert [r["id"] for r in read_results(out)] == committed
    assert sorted(map(json.dumps, read_results(out))) == sorted(map(json.dumps, results))  # same content


def test_a_removed_finished_spool_file_is_kept_by_merge_and_a_rerun_drops_the_stale_merge(
        tmp_path: Path) -> None:
    """Before: merge failed forever ("50 unexpected ... a rerun cannot help"); old results.jsonl stayed."""
    items = random_items(40, seed=12)
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, items, files=2), tmp_path / "out"
    _run(cfg, spool, out)
    merge_job(out)
    (spool / "part-001.jsonl").unlink()
    _run(cfg, spool, out)
    # the rerun committed nothing: the merge it would make stale is still whole, and kept
    # (tests/inference/test_merge_integrity.py: removed once a rerun commits more)
    assert (out / "results.jsonl").exists() and job_status(out)["merged"]
    res = merge_job(out)
    assert (res["items"], res["without_input"]) == (40, 20)
    assert [r["id"] for r in read_results(out)][:20] == [i["id"] for i in items[:20]]
    proc = _fabric("infer", "merge", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "20 results kept whose ids the input no longer holds" in proc.stdout + proc.stderr


def _bad_and_good(tmp_path: Path, bad: int, good: int) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [json.dumps({"id": f"b{k}", "prompt": [1] * 500, "max_new_tokens": 4}) for k in range(bad)]
    lines += [json.dumps(i) for i in random_items(good, seed=2)]
    (spool / "a.jsonl").write_text("\n".join(lines) + "\n")
    return spool


def test_too_many_dead_letters_fail_the_run_and_the_summary_names_the_file(tmp_path: Path) -> None:
    """Before: 999 of 1,000 lines dead-lettered exited 0 and the path of dead-letter.jsonl was never given."""
    cfg, spool = make_config(tmp_path), _bad_and_good(tmp_path, 6, 4)
    args = ("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--no-progress")
    proc = _fabric(*args, "--output", str(tmp_path / "out"))
    assert proc.returncode == 3, proc.stderr
    assert "6 of 10 input lines (60.00%) were dead-lettered, more than --max-rejected allows" in proc.stderr
    assert str(tmp_path / "out" / "dead-letter.jsonl") in proc.stderr
    proc = _fabric(*args, "--output", str(tmp_path / "out2"), "--max-rejected", "60%")
    assert proc.returncode == 0, proc.stderr
    assert f"6 dead-lettered (each with its reason: {tmp_path / 'out2' / 'dead-letter.jsonl'})" in proc.stdout
    proc = _fabric(*args, "--output", str(tmp_path / "out3"), "--max-rejected", "5")
    assert proc.returncode == 3 and "more than --max-rejected allows (5)" in proc.stderr
    proc = _fabric(*args, "--output", str(tmp_path / "out4"), "--max-rejected", "1.5")
    assert proc.returncode == 2 and "is not a count" in proc.stderr


def test_progress_prints_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """Before: --progress printed nothing into a Slurm log (stderr not a TTY)."""
    from fabric_hpc.inference import CostModel

    cfg = make_config(tmp_path, cost=CostModel(base_s=5e-3, prefill_s_per_token=0.0, decode_s_per_seq=0.0,
                                               ctx_s_per_token=0.0))
    spool = write_spool(tmp_path, random_items(150, seed=5), files=1)
    proc = _fabric("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                   str(tmp_path / "out"), "--progress", "--progress-every", "0.5")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if " progress: done " in ln]
    assert lines and "items/s" in lines[0], proc.stderr


def test_status_labels_the_rank_table_as_the_last_snapshot(tmp_path: Path) -> None:
    """Before: "900 items done" above a rank table of 600 (its last metrics snapshot), nothing said so."""
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, random_items(20), files=1), tmp_path / "o"
    _run(cfg, spool, out)
    proc = _fabric("infer", "status", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "20 items done (journalled)" in proc.stdout
    assert "last metrics snapshot" in proc.stdout and "s ago)" in proc.stdout, proc.stdout


def test_an_engine_kind_mismatch_is_named_as_such(tmp_path: Path) -> None:
    """Before: six "X: the artefact does not state it" lines for a simulated config over a pytorch engine."""
    from fabric_hpc.inference.engine import EngineConfigError, load_engine_config
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    cfg = prepare_pytorch_engine(tmp_path / "pt", preset="tiny", dtype="float32", max_batch_size=4,
                                 max_input_len=32, max_seq_len=64, max_num_tokens=128)
    kind = r"holds a pytorch engine; the config .* says engine 'simulated'"
    with pytest.raises(EngineConfigError, match=kind) as err:
        load_engine_config({**cfg, "engine": "simulated"})
    assert "does not state it" not in str(err.value) and "set engine to 'pytorch'" in err.value.hint
    sim = json.loads(make_config(tmp_path).read_text())
    with pytest.raises(EngineConfigError, match="holds a simulated engine; the config"):
        load_engine_config({**sim, "engine": "pytorch"})
    assert load_engine_config(cfg).engine == "pytorch"
