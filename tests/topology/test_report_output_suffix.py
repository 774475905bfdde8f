"""A report file named like another format is refused before anything is written: ``--svg x.png``
wrote an SVG text into ``x.png`` (image viewers cannot open it), ``--png x.jpg`` a PNG into a .jpg,
``--out x.png`` the HTML page into a .png. Same suffix in any case, or no known suffix: written."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main


REFUSED = [("--svg", "pic.png", "a PNG"), ("--png", "pic.svg", "an SVG"), ("--png", "pic.jpg", "a JPEG"),
           ("--out", "page.png", "a PNG"), ("--png", "pic.html", "an HTML")]


@pytest.mark.parametrize(("option", "name", "kind"), REFUSED)
def test_a_file_named_like_another_format_is_refused(tmp_path, capsys, option, name, kind):
    out = ["--out", str(tmp_path / "r.html")] if option != "--out" else []
    assert main(["topology", "report", "leaf-spine-16", *out, option, str(tmp_path / name)]) == 3
    err = capsys.readouterr().err
    assert f"'{tmp_path / name}'" in err and f"named like {kind} file" in err, err
    assert list(tmp_path.iterdir()) == []


def test_matching_or_unknown_suffixes_are_written(tmp_path, capsys):
    args = ["--out", str(tmp_path / "r.HTM"), "--png", str(tmp_path / "p.PNG"), "--svg", str(tmp_path / "s")]
    assert main(["topology", "report", "leaf-spine-16", *args]) == 0
    assert (tmp_path / "p.PNG").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "s").read_bytes().lstrip().startswith(b"<?xml")
    assert (tmp_path / "r.HTM").read_text().startswith("<!DOCTYPE html>")


def test_the_live_report_checks_its_files_before_asking_slurm(tmp_path, capsys):
    """No Slurm here: without the early check this run ends in Slurm's error (exit 5)."""
    assert main(["slurm", "report", "--topology", "leaf-spine-16", "--out", str(tmp_path / "c.html"),
                 "--png", str(tmp_path / "c.svg")]) == 3
    assert "named like an SVG file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
