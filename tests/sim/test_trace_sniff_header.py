"""A bare path is sniffed by its parsed header columns (probe 2026-12-06)."""

from __future__ import annotations

import pytest

from fabric_hpc.sim import load_trace


# 4. a bare path is sniffed by its parsed header columns


@pytest.mark.parametrize("header", ['"job_id","num_gpu","submit_time","duration"',
                                    "job_id, num_gpu, submit_time, duration",
                                    "num_gpu,duration,job_id,submit_time"])
def test_bare_tiresias_path_with_any_header_layout(tmp_path, header):
    p = tmp_path / "t.csv"
    cols = [c.strip().strip('"') for c in header.split(",")]
    row = {"job_id": "0", "num_gpu": "4", "submit_time": "0", "duration": "100"}
    p.write_text(header + "\n" + ",".join(row[c] for c in cols) + "\n")
    trace = load_trace(str(p))
    assert trace.name == "tiresias:t.csv"
    assert [(j.id, j.gpus, j.duration) for j in trace] == [("t0", 4, 100.0)]


def test_spaces_after_commas_are_not_part_of_the_fields(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text('"num_gpu", "job_id", "submit_time", "duration"\n4, 7, 0, 100\n8, "x 1", 5, 50\n')
    assert [(j.id, j.gpus, j.submit) for j in load_trace(str(p))] == [("t7", 4, 0.0), ("tx 1", 8, 5.0)]
    o = tmp_path / "o.csv"
    o.write_text('"qos", "name", "num_gpu", "creation_time", "deletion_time"\nLS, p0, 1, 0, 10\n')
    assert [(j.id, j.tier) for j in load_trace(str(o))] == [("p0", "high")]
