"""Click parameter types of fabric_hpc/cli/params.py, through the real CLI."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv", [
    ["ckpt", "restore", "CK", "--to-world-size", "2", "--out", "{missing}/x"],
    ["ckpt", "convert", "CK", "{missing}/x", "--recipe", "R"],
    ["ckpt", "import", "--h5", "F.h5", "{missing}/x"],
    ["ckpt", "export-hf", "CK", "{missing}/x"],
    ["sim", "run", "--trace", "synthetic:jobs=5", "-t", "superpod:sus=1", "--out", "{missing}/x"],
])
def test_an_output_directory_is_created_only_inside_an_existing_one(tmp_path, capsys, argv):
    """An output directory may be new, but its parent must exist (nothing created on a typo): one
    line, exit 3, nothing written."""
    from fabric_hpc.cli.main import main

    args = [a.replace("{missing}", str(tmp_path / "no" / "such")) for a in argv]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "does not exist" in err and "mkdir -p" in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()
    (tmp_path / "afile").write_text("")
    assert main([a.replace("{missing}/x", str(tmp_path / "afile")) for a in argv]) == 3
    assert "exists and is not a directory" in capsys.readouterr().err


def test_an_output_file_below_a_file_names_the_file(tmp_path, capsys):
    """`-o report.yaml/x` where report.yaml is a file suggested `mkdir -p report.yaml`."""
    from fabric_hpc.cli.main import main

    (tmp_path / "afile").write_text("")
    assert main(["topology", "report", "superpod:sus=1", "--out", str(tmp_path / "afile" / "r.html")]) == 3
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'afile'}' is not a directory" in err and "mkdir" not in err


def test_an_output_named_dash_is_not_taken_for_stdout(tmp_path, capsys, monkeypatch):
    """`--out -` wrote a file named '-' in the working directory; it is refused, naming the fix."""
    from fabric_hpc.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["topology", "report", "superpod:sus=1", "--out", "-"]) == 3
    err = capsys.readouterr().err
    assert "is a file, not standard output" in err and "./-" in err
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("argv", [
    ["sim", "run", "--trace", "synthetic:jobs=5", "-t", "leaf-spine:hosts=2", "--no-progress", "--out", ""],
    ["ckpt", "export-hf", "CK", ""],
])
def test_an_empty_output_directory_name_is_refused(tmp_path, capsys, monkeypatch, argv):
    """`sim run --out ''` wrote results.json, state.json and topology.html into the current directory."""
    from fabric_hpc.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "is an empty name" in err and "fix: give a directory name" in err
    assert list(tmp_path.iterdir()) == []
