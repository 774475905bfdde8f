"""Trace files with old-Mac line endings (a lone CR) read like LF and CRLF files, with line numbers
counted the same way in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import load_trace, read_swf, read_tiresias

ROWS = ["job_id,num_gpu,submit_time,duration", "1,4,100,50", "2,8,200,60", "3,1,300,70"]


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_a_tiresias_csv_reads_the_same_with_any_line_end(tmp_path: Path, eol: bytes) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(eol.join(r.encode() for r in ROWS) + eol)
    jobs = read_tiresias(p)
    assert [(j.id, j.gpus, j.submit, j.duration) for j in jobs] == [
        ("t1", 4, 0.0, 50.0), ("t2", 8, 100.0, 60.0), ("t3", 1, 200.0, 70.0)]
    assert len(load_trace(str(p))) == 3  # the kind is sniffed from the first line too


def test_an_error_in_a_cr_file_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b"\r".join(r.encode() for r in [*ROWS[:2], "2,x,200,60", ROWS[3]]))
    with pytest.raises(ConfigError, match=r"t\.csv:3: num_gpu='x'"):
        read_tiresias(p)


def test_a_cr_swf_file_reads(tmp_path: Path) -> None:
    line = "1 0 -1 100 8 -1 -1 8 200 -1 1 1 1 -1 1 -1 -1 -1"
    p = tmp_path / "a.swf"
    second = line.replace("1 0 -1", "2 5 -1", 1)
    p.write_bytes(b"; comment\r" + line.encode() + b"\r" + second.encode() + b"\r")
    assert [j.id for j in read_swf(p)] == ["swf1", "swf2"]
