"""``sim compare`` of a run whose JCTs are all 0 s: the log-scale JCT CDF draws no warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main


def test_compare_of_zero_second_jobs_prints_no_matplotlib_warning(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "zero.csv"
    trace.write_text("job_id,num_gpu,submit_time,duration\n1,1,0,0\n2,1,0,0\n3,2,5,0\n")
    out = tmp_path / "run"
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "--topology", "leaf-spine:hosts=2",
                 "--out", str(out), "--no-progress", "--no-topology-report", "--json"]) == 0
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["sim", "compare", str(out), "--json", "--report", str(tmp_path / "r.html")]) == 0
    err = capfd.readouterr().err
    assert "Warning" not in err and "log-scaled" not in err, err
    assert (tmp_path / "r.html").stat().st_size > 0
