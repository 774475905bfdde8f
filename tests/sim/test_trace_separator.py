"""A CSV trace saved with ';' or tab between its columns (Excel's "CSV" in many locales writes ';')
was "cannot tell the trace format" or "no column duration, job_id, ..." while its header names them
all; the error now says the separator is the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import load_trace

ROWS = [["job_id", "num_gpu", "submit_time", "duration"], ["1", "2", "0", "10"]]


@pytest.mark.parametrize("sep,name", [(";", "';'"), ("\t", "tab")])
@pytest.mark.parametrize("kind", ["", "tiresias:"])
def test_a_trace_separated_by_other_than_commas_is_named(tmp_path: Path, sep: str, name: str,
                                                         kind: str) -> None:
    p = tmp_path / "excel.csv"
    p.write_text("".join(sep.join(r) + "\r\n" for r in ROWS))
    with pytest.raises(ConfigError) as exc:
        load_trace(f"{kind}{p}")
    assert f"separated by {name}" in exc.value.message
    assert "commas" in exc.value.hint


def test_the_same_trace_with_commas_loads(tmp_path: Path) -> None:
    p = tmp_path / "ok.csv"
    p.write_text("".join(",".join(r) + "\n" for r in ROWS))
    assert [j.id for j in load_trace(str(p))] == ["t1"]
