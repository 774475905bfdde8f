"""What an outside probe of ``fabric sim compare`` and ``fabric sim demo`` found: a results.json that
is not fabric's gets a fix line, ``--report`` may not take a run file's name even before the run wrote
it, and ``demo --out ''`` is refused as ``run --out ''`` is (it wrote into the current directory)."""

from __future__ import annotations

import os
from pathlib import Path

from fabric_hpc.cli.main import main


def _run(out: Path, *flags: str) -> None:
    assert main(["sim", "run", "--trace", "synthetic:jobs=5,seed=1", "-t", "leaf-spine:hosts=2",
                 "--out", str(out), "--no-progress", "--json", *flags]) == 0


def test_compare_names_the_fix_for_a_results_file_fabric_did_not_write(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text('{"tests": 12, "passed": 12}')
    assert main(["sim", "compare", str(other)]) == 3
    err = capsys.readouterr().err
    assert "not a version-1 simulation results file" in err
    assert "fix: " in err and "fabric sim run --out DIR" in err


def test_compare_refuses_a_report_named_like_a_run_file_the_run_did_not_write(tmp_path, capsys):
    run = tmp_path / "r"
    _run(run, "--no-topology-report")
    assert not (run / "topology.html").exists()
    capsys.readouterr()
    assert main(["sim", "compare", str(run), "--report", str(run / "topology.html")]) == 3
    err = capsys.readouterr().err
    assert "topology.html" in err and "fix: give --report another file name" in err
    assert not (run / "topology.html").exists()


def test_demo_refuses_an_empty_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "demo", "--out", ""]) == 3
    assert "--out is an empty name" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_demo_refuses_a_file_as_out_with_exit_3(tmp_path, capsys):
    f = tmp_path / "f.csv"
    f.write_text("x\n")
    assert main(["sim", "demo", "--out", str(f)]) == 3
    assert "exists and is not a directory" in capsys.readouterr().err
    assert f.read_text() == "x\n"


def test_demo_still_creates_its_own_nested_out(tmp_path):
    # docs: `fabric sim demo` creates its own directory (demo-out/sim by default), so run's check that
    # --out's parent exists does not apply to it (the option is checked here, without the replays)
    from fabric_hpc.cli.params import OutputDir

    assert OutputDir(parents=True).convert(str(tmp_path / "a" / "sim"), None, None) == tmp_path / "a" / "sim"
    assert not (tmp_path / "a").exists()


def test_demo_refuses_an_out_under_a_file_before_replaying(tmp_path, capsys):
    f = tmp_path / "f.csv"
    f.write_text("x\n")
    assert main(["sim", "demo", "--out", str(f / "sim")]) == 3
    assert "is not a directory" in capsys.readouterr().err
    assert f.read_text() == "x\n"


def test_compare_of_a_directory_holding_runs_names_them(tmp_path, capsys):
    # `fabric sim demo` writes DIR/slurm and DIR/fabric: compare DIR names both instead of "run first"
    (tmp_path / "sim").mkdir()
    for name in ("slurm", "fabric"):
        _run(tmp_path / "sim" / name, "--no-topology-report")
    capsys.readouterr()
    assert main(["sim", "compare", str(tmp_path / "sim")]) == 3
    err = capsys.readouterr().err
    assert "no simulation results at" in err
    assert f"fix: it holds runs: give them: fabric sim compare {tmp_path / 'sim' / 'fabric'} " \
           f"{tmp_path / 'sim' / 'slurm'}" in err
