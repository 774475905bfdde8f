"""Failures a user meets say what went wrong and how to fix it: no tracebacks, no bare reprs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.events import read_json_lines
from fabric_hpc.inference import ChunkSink, Pipeline, SimulatedEngine, VirtualClock, merge_job, run_job

from .builders import SMALL, make_config, random_items, read_results, work_items, write_spool


def test_an_id_with_a_lone_surrogate_is_dead_lettered_and_the_rest_runs(tmp_path: Path) -> None:
    """``"b\\ud800"`` is valid JSON but no UTF-8 string: it used to crash every run (the engine
    encodes ids) with a UnicodeEncodeError traceback."""
    items = random_items(10, seed=4)
    spool = write_spool(tmp_path, items, files=1,
                        extra_lines=['{"id": "b\\ud800", "prompt": [1, 2], "max_new_tokens": 2}'])
    out = tmp_path / "out"
    res = run_job(make_config(tmp_path), str(spool), out, engine_options={"clock": VirtualClock()})
    assert res["items_done"] == 10 and res["dead_letter"] == 1
    (reason,) = [r["reason"] for r in read_json_lines(out / "dead-letter.jsonl")]
    assert "lone surrogate" in reason
    merge_job(out)
    assert {r["id"] for r in read_results(out)} == {i["id"] for i in items}


def test_an_engine_error_becomes_a_fabric_error_naming_it(tmp_path: Path) -> None:
    class Picky(SimulatedEngine):
        def step(self):  # type: ignore[no-untyped-def]
            raise ValueError("bad token id 99999")

    sink = ChunkSink(tmp_path, rank=0, attempt=1, chunk_size=8)
    pipe = Pipeline(Picky(SMALL, clock=VirtualClock()), iter(work_items([(8, 3)] * 20)), sink)
    with pytest.raises(ExternalError, match="pipeline failed: ValueError: bad token id 99999") as info:
        pipe.run()
    assert "rerun with the same --output" in (info.value.hint or "")


def test_a_full_disk_names_the_file_and_the_rerun_recovers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while journalling said only `error: path: No space left on device`."""
    import errno
    import os

    from fabric_hpc.cli.main import main

    spool, cfg, out = write_spool(tmp_path, random_items(30, seed=2)), make_config(tmp_path), tmp_path / "out"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("journal/rank-00000.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    argv = ["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
            "--no-progress", "--chunk-size", "8"]
    monkeypatch.setattr(os, "fsync", fsync)
    assert main(argv) == 5
    err = capsys.readouterr().err
    assert f"cannot write file '{out / 'journal' / 'rank-00000.jsonl'}': the disk is full" in err
    assert "free space" in err and "Traceback" not in err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(argv) == 0 and main(["infer", "merge", str(out)]) == 0


def test_pytorch_engine_api_returns_an_absolute_engine_dir_and_vocab_errors_have_a_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`infer run` reads engine_dir relative to the config file: a relative one returned by the
    Python API broke as soon as the config was saved elsewhere (docs/engines.md's example)."""
    pytest.importorskip("torch")
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inference import EngineRequest, build_engine, load_engine_config
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    monkeypatch.chdir(tmp_path)
    cfg = prepare_pytorch_engine("models/tiny", preset="tiny", dtype="float32", max_batch_size=2,
                                 max_input_len=8, max_seq_len=16, max_num_tokens=16)
    assert cfg["engine_dir"] == str((tmp_path / "models" / "tiny").resolve())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "engine.json").write_text(json.dumps(cfg))
    engine = build_engine(load_engine_config(tmp_path / "configs" / "engine.json"), device="cpu")
    with pytest.raises(ConfigError, match="outside the vocabulary") as info:
        engine.add([EngineRequest("v", [1, 10**6], 2)])
    assert "tokenizer" in (info.value.hint or "")


def test_after_a_stdin_run_the_next_step_names_merge_input(tmp_path: Path) -> None:
    """`next: fabric infer merge DIR` after `--input -` failed: merge needs the input again."""
    from click.testing import CliRunner

    from fabric_hpc.cli.main import cli

    data = "".join(json.dumps(i) + "\n" for i in random_items(5, seed=1))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["infer", "run", "--engine-config", str(make_config(tmp_path)), "--input", "-",
                                 "--output", str(out), "--no-progress"], input=data)
    assert r.exit_code == 0, r.output
    assert f"next: fabric infer merge {out} --input FILE" in r.output


def test_an_output_directory_below_a_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`infer run --output spool/a.jsonl/x` said the directory a.jsonl does not exist and
    suggested `mkdir -p` on a path that is a file."""
    from fabric_hpc.cli.main import main

    (tmp_path / "a.jsonl").write_text("")
    assert main(["infer", "run", "--engine-config", str(tmp_path / "cfg.json"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "a.jsonl" / "x")]) == 3
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'a.jsonl'}' is not a directory" in err and "mkdir" not in err
