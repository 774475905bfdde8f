"""results.json names the trace file by its content, so ``fabric sim compare`` tells two
clusters' jobs.csv apart (probe 2026-12-06)."""

from __future__ import annotations

import hashlib

from fabric_hpc.cli.main import main
from fabric_hpc.sim import load_results, load_trace, read_tiresias
from fabric_hpc.sim.report import comparison_warnings

HEAD = "job_id,num_gpu,submit_time,duration\n"
TOPO = "leaf-spine:hosts=2"


def _run(tmp_path, trace, out, *flags):
    return main(["sim", "run", "--trace", str(trace), "--topology", TOPO, "--out", str(tmp_path / out),
                 "--no-progress", "--json", *flags])


# 2. results.json names the trace file by its content, so compare tells two clusters' jobs.csv apart


def test_compare_warns_on_two_files_of_one_name(tmp_path, capsys):
    for cluster, dur in (("a", 100), ("b", 900)):
        (tmp_path / cluster).mkdir()
        (tmp_path / cluster / "jobs.csv").write_text(HEAD + f"0,4,0,{dur}\n1,4,10,50\n")
        assert _run(tmp_path, f"tiresias:{tmp_path / cluster / 'jobs.csv'}", f"r{cluster}") == 0
    capsys.readouterr()
    data = load_results(tmp_path / "ra")
    body = (tmp_path / "a" / "jobs.csv").read_bytes()
    assert data["trace_file"] == {"path": str((tmp_path / "a" / "jobs.csv").resolve()),
                                  "sha256": hashlib.sha256(body).hexdigest()}
    assert main(["sim", "compare", str(tmp_path / "ra"), str(tmp_path / "rb")]) == 0
    out = capsys.readouterr().out
    assert "warning: the runs replayed different traces" in out and "sha256" in out


def test_compare_same_content_elsewhere_and_old_results(tmp_path):
    new = [{"trace": "tiresias:jobs.csv", "trace_file": {"path": f"/{d}/jobs.csv", "sha256": "ab" * 32},
            "summary": {"gpus": 16, "fabric": "f"}} for d in ("x", "y")]
    assert comparison_warnings(new, ["x", "y"]) == []  # a copy of one file: the same jobs
    old = {"trace": "tiresias:jobs.csv", "summary": {"gpus": 16, "fabric": "f"}}  # written before the hash
    assert comparison_warnings([old, dict(old)], ["x", "y"]) == []
    assert comparison_warnings([old, new[0]], ["x", "y"]) == []  # no hash to compare: by name, as before
    other = {**new[1], "trace_file": {"path": "/y/jobs.csv", "sha256": "cd" * 32}}
    assert any("different traces" in w for w in comparison_warnings([new[0], other], ["x", "y"]))


def test_trace_records_its_file(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(HEAD + "0,4,0,100\n")
    trace = read_tiresias(p)
    assert trace.file_identity() == {"path": str(p.resolve()),
                                     "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    assert load_trace("synthetic:jobs=3").file_identity() is None
