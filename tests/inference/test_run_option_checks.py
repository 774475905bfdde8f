"""`fabric infer run` options a user can get wrong (prober 3): a non-finite --progress-every (and
`fabric slurm report --watch`) is a usage error (before: nan was accepted and turned progress off);
resuming with another --output-mode is refused (before: it mixed 0600 and 0644 files); `--input
/dev/stdin` from a pipe points at `-`; gzip on stdin names no `<stdin>` file to gunzip."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

from .builders import make_config, random_items, write_spool

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_progress_every_must_be_finite(tmp_path: Path, value: str, capsys) -> None:
    cfg, spool = make_config(tmp_path), write_spool(tmp_path, random_items(4), files=1)
    code = main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output",
                 str(tmp_path / "out"), "--progress-every", value])
    assert code == 2, capsys.readouterr().err
    assert "--progress-every" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_slurm_report_watch_must_be_finite(tmp_path: Path, value: str, capsys) -> None:
    assert main(["slurm", "report", "--topology", str(tmp_path / "t.yaml"), "--watch", value]) == 2
    assert "--watch" in capsys.readouterr().err


def test_resuming_with_another_output_mode_is_refused(tmp_path: Path, capsys) -> None:
    cfg, out = make_config(tmp_path), tmp_path / "out"
    spool = write_spool(tmp_path, random_items(6, max_new=4), files=1)
    run = ["infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
           "--no-progress"]
    assert main([*run, "--chunk-size", "2"]) == 0
    new = {"id": "new", "prompt": [1], "max_new_tokens": 2}
    (spool / "part-001.jsonl").write_text(json.dumps(new) + "\n")
    capsys.readouterr()
    assert main([*run, "--output-mode", "umask"]) == 3
    err = capsys.readouterr().err
    assert "--output-mode private" in err and "fix: " in err, err
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (out / "chunks").iterdir()}
    assert modes == {0o600}, modes
    assert main(run) == 0  # the recorded mode (the default) resumes


def test_dev_stdin_from_a_pipe_points_at_dash(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "infer", "run",
                           "--engine-config", str(cfg),
                           "--input", "/dev/stdin", "--output", str(tmp_path / "out"), "--no-progress"],
                          input=b'{"id": "a", "prompt": [1], "max_new_tokens": 1}\n', capture_output=True,
                          env=ENV, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "pipe:[" not in err and "--input -" in err, err


def test_gzip_on_stdin_names_no_stdin_file(tmp_path: Path) -> None:
    import gzip

    cfg = make_config(tmp_path)
    data = gzip.compress(b'{"id": "a", "prompt": [1], "max_new_tokens": 1}\n')
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "infer", "run",
                           "--engine-config", str(cfg),
                           "--input", "-", "--output", str(tmp_path / "out"), "--no-progress"],
                          input=data, capture_output=True, env=ENV, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 3 and "gzip-compressed" in err, err
    assert "<stdin>" not in err.split("fix:")[-1] and "gunzip -c" in err, err
