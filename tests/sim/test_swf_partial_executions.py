"""An SWF log of checkpointed or swapped jobs writes one job number on several lines (status 2: a
partial execution that is continued, 3 / 4: the last one, completed / failed). The reader does not
merge them; the repeated job number's error says so and how to keep one line per job, instead of
calling the archive's log broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import read_swf

WHOLE = "1 0 0 200 4 -1 -1 4 400 -1 1 1 1 1 1 -1 -1 -1\n"
PARTS = ("1 0 0 100 4 -1 -1 4 400 -1 2 1 1 1 1 -1 -1 -1\n"
         "1 0 150 100 4 -1 -1 4 400 -1 3 1 1 1 1 -1 -1 -1\n")
OTHER = "2 10 0 50 2 -1 -1 2 200 -1 1 1 1 1 1 -1 -1 -1\n"


def test_partial_execution_lines_are_named_with_the_fix(tmp_path: Path) -> None:
    p = tmp_path / "ckpt.swf"
    p.write_text("; Version: 2.2\n" + WHOLE + OTHER + PARTS)
    with pytest.raises(ConfigError, match=r"ckpt\.swf:4: job id 'swf1' already at line 2") as exc:
        read_swf(p)
    assert "partial executions" in exc.value.hint and "status 2, 3 or 4" in exc.value.hint
    p.write_text("; Version: 2.2\n" + WHOLE + OTHER)  # the hint's fix: one line per job
    assert [j.id for j in read_swf(p)] == ["swf1", "swf2"]


def test_a_plain_repeated_job_number_keeps_the_plain_fix(tmp_path: Path) -> None:
    p = tmp_path / "twice.swf"
    p.write_text(WHOLE + WHOLE)
    with pytest.raises(ConfigError) as exc:
        read_swf(p)
    assert exc.value.hint == "each job once; fix or drop the repeated row"


def test_the_cli_prints_it_as_one_error_and_a_fix(tmp_path: Path, capsys) -> None:
    p = tmp_path / "ckpt.swf"
    p.write_text(PARTS + OTHER)
    assert main(["sim", "run", "--trace", f"swf:{p}", "-t", "leaf-spine:hosts=2", "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "fix: " in err and "partial executions" in err
