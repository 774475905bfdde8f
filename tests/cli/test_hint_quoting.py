"""Commands in hints are shell-quoted: a path with a space was printed bare (`sbatch /tmp/x/my
jobs/train_gang.sbatch`, `mkdir -p /tmp/x/tiny dir/cfg`), and pasting it ran something else."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import NotFoundError
from fabric_hpc.inputs import output_path


def test_jobscripts_quotes_the_sbatch_hint(tmp_path: Path) -> None:
    target = tmp_path / "my jobs"
    res = CliRunner().invoke(cli, ["slurm", "jobscripts", str(target)])
    assert res.exit_code == 0, res.output
    hint = next(line for line in res.output.splitlines() if line.startswith("submit"))
    cmd = hint.split("e.g. ", 1)[1]
    assert shlex.split(cmd) == ["sbatch", str(target / "train_gang.sbatch")], hint


def test_a_missing_output_directory_hint_quotes_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as err:
        output_path(tmp_path / "tiny dir" / "cfg" / "engine.json", what="--config-out")
    cmd = err.value.hint.split("(", 1)[1].rstrip(")")
    assert shlex.split(cmd) == ["mkdir", "-p", str(tmp_path / "tiny dir" / "cfg")], err.value.hint
