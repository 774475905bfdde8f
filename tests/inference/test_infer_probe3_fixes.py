"""Prober 3 (`fabric infer` with MPICH's mpiexec): stdin with several ranks refused before the
output directory is touched, an engine_dir spelled another way resumes, the job's busy share over
world size x job wall time, a missing --textfile-dir refused at start, a quoted next command, and
merge notes that say what is true."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

from .builders import make_config, random_items, write_spool
from .test_mpi import FABRIC, MPIEXEC, REPO, finish, launch  # noqa: F401

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.mpi
def test_stdin_with_two_ranks_is_refused_before_the_output_is_touched(tmp_path: Path) -> None:
    from tests.real import require_real

    require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    cfg = make_config(tmp_path)
    lines = "".join(json.dumps(it) + "\n" for it in random_items(10, max_new=4))
    out = tmp_path / "out"
    proc = subprocess.run([str(MPIEXEC), "-n", "2", str(FABRIC), "infer", "run", "--engine-config", str(cfg),
                           "--input", "-", "--output", str(out), "--no-progress"], input=lines, text=True,
                          capture_output=True, env=ENV, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "stdin input needs a single rank" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not [p.name for p in out.iterdir() if p.name != ".run.lock"], \
        sorted(p.name for p in out.iterdir())
    # the fix the error names (a spool) with the same --output is not refused
    spool = write_spool(tmp_path, random_items(10, max_new=4), files=1)
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress"]) == 0


def _with_engine_dir(cfg: Path, engine_dir: str, name: str) -> Path:
    doc = json.loads(cfg.read_text())
    path = cfg.parent / name
    path.write_text(json.dumps({**doc, "engine_dir": engine_dir}))
    return path


def test_the_same_engine_dir_spelled_another_way_resumes(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A trailing slash or a symlink to the same engine directory was "a different engine_config";
    a byte-identical copy serves the same weights (the run.json's identity): it resumes too."""
    import shutil

    cfg = make_config(tmp_path)
    engine_dir = json.loads(cfg.read_text())["engine_dir"]
    spool, out = write_spool(tmp_path, random_items(12, max_new=4), files=1), tmp_path / "out"
    (tmp_path / "link").symlink_to(engine_dir)
    shutil.copytree(engine_dir, tmp_path / "copy")
    run = ["infer", "run", "--input", str(spool), "--output", str(out), "--no-progress", "--engine-config"]
    assert main([*run, str(cfg)]) == 0
    for name, where in (("slash.json", engine_dir + "/"), ("link.json", str(tmp_path / "link")),
                        ("copy.json", str(tmp_path / "copy"))):
        assert main([*run, str(_with_engine_dir(cfg, where, name))]) == 0, capsys.readouterr().err
    # other weights are still refused
    (tmp_path / "copy" / "extra.bin").write_bytes(b"other")
    assert main([*run, str(tmp_path / "copy.json")]) == 3
    assert "cannot resume it" in capsys.readouterr().err


def test_an_idle_rank_counts_as_an_idle_gpu_for_the_whole_job() -> None:
    """A rank with no work ends at once (wall 0.001 s): weighted by its own wall time it weighed
    nothing, and a job with one busy GPU of two reported 50 % busy as if both were."""
    from fabric_hpc.inference.telemetry import job_totals

    busy = {"items_done": 4, "engine_busy_fraction": 0.5, "wall_s": 10.0}
    idle = {"items_done": 0, "engine_busy_fraction": 0.0, "wall_s": 0.001}
    job = job_totals([busy, idle])
    assert job["engine_busy_fraction"] == pytest.approx(0.5 * 10.0 / (2 * 10.0))
    assert job_totals([busy, busy])["engine_busy_fraction"] == pytest.approx(0.5)
    assert job_totals([])["engine_busy_fraction"] == 0.0


def test_a_missing_textfile_dir_is_refused_before_work_starts(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 0 and no word (an infer.telemetry_failed event at -v only); the metrics were
    never exported. A typo'd node-exporter directory is refused, exit 3, naming the fix."""
    cfg = make_config(tmp_path)
    spool, out = write_spool(tmp_path, random_items(6, max_new=4), files=1), tmp_path / "out"
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "no-such-dir", tmp_path / "afile"):
        assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                     "--no-progress", "--textfile-dir", str(bad)]) == 3
        err = capsys.readouterr().err
        assert "--textfile-dir" in err and str(bad) in err and "Traceback" not in err, err
        assert not out.exists()
    (tmp_path / "tf").mkdir()
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress", "--textfile-dir", str(tmp_path / "tf")]) == 0


def test_the_next_command_is_shell_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`--output "out dir é/"` printed `next: fabric infer merge out dir é`: three arguments."""
    import shlex

    cfg = make_config(tmp_path)
    spool = write_spool(tmp_path, random_items(6, max_new=4), files=1)
    monkeypatch.chdir(tmp_path)
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", "out dir é/",
                 "--no-progress"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("next: "))
    assert shlex.split(line.removeprefix("next: ")) == ["fabric", "infer", "merge", "out dir é"], line


def _run_and_merge(cfg: Path, spool: Path, out: Path, *merge_args: str) -> int:
    assert main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
                 "--no-progress", "--max-rejected", "5"]) == 0
    return main(["infer", "merge", str(out), *merge_args])


def test_merge_notes_say_what_is_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dead-lettered line fixed by a new spool file with the same id has a result, yet the note
    said it had none; results outside a subset given with --input were blamed on a spool file
    "removed or changed after they ran"."""
    cfg = make_config(tmp_path)
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    good = [{"id": f"g{k}", "prompt": [1, 2, 3], "max_new_tokens": 2} for k in range(5)]
    (spool / "a.jsonl").write_text("".join(json.dumps(it) + "\n" for it in good)
                                   + '{"id": "x", "prompt": [1], "max_new_tokens": 0}\n{broken\n')
    assert _run_and_merge(cfg, spool, out) == 0
    err = capsys.readouterr().err
    assert "2 input lines were dead-lettered and have no result" in err, err
    (spool / "b.jsonl").write_text('{"id": "x", "prompt": [1], "max_new_tokens": 2}\n')  # the fix
    assert _run_and_merge(cfg, spool, out) == 0
    err = capsys.readouterr().err
    assert "1 input lines were dead-lettered and have no result" in err, err
    assert "1 dead-lettered input lines have a result" in err, err
    sub = tmp_path / "sub.jsonl"
    sub.write_text("".join(json.dumps(it) + "\n" for it in good[:2]))
    assert main(["infer", "merge", str(out), "--input", str(sub)]) == 0
    err = capsys.readouterr().err
    assert "are not in the input given to merge" in err and "removed or changed" not in err, err


def test_priority_and_class_are_recorded_in_the_results(tmp_path: Path) -> None:
    """Documented as "optional and recorded", they were stored on the work item and written nowhere."""
    from .builders import read_results

    cfg = make_config(tmp_path)
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    items = [{"id": "p", "prompt": [1, 2], "max_new_tokens": 2, "priority": -3, "class": "chat é"},
             {"id": "c", "prompt": [1, 2], "max_new_tokens": 2, "class": "batch"},
             {"id": "n", "prompt": [1, 2], "max_new_tokens": 2}]
    (spool / "a.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    assert _run_and_merge(cfg, spool, out) == 0
    got = {r["id"]: r for r in read_results(out)}
    assert (got["p"]["priority"], got["p"]["class"]) == (-3, "chat é")
    assert got["c"]["class"] == "batch" and "priority" not in got["c"]  # the defaults are left out
    assert "priority" not in got["n"] and "class" not in got["n"]
    assert list(got["p"])[:3] == ["id", "tokens", "finish_reason"] and list(got["p"])[-1] == "metrics"
