"""Trace rows the readers skipped are counted in the summary, results.json and ``sim compare``, so
submitted = jobs + skipped and jobs = finished + timeouts + unfinished + rejected can be checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.scheduler import slurm_policy
from fabric_hpc.sim import Simulator, gang_workload, read_openb, summarize
from fabric_hpc.sim.rows import NEVER_SCHEDULED, NOT_GPU
from fabric_hpc.topology import open_fabric

HEAD = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n")
ROWS = ("a,1000,1024,1,1000,,BE,Running,100,400,150\n"
        "cpu,1000,1024,0,0,,BE,Running,110,400,150\n"
        "cpu2,1000,1024,0,0,,LS,Running,110,400,150\n"
        "waited,1000,1024,2,1000,,LS,Pending,120,900,\n"
        "b,1000,1024,2,1000,,LS,Running,130,500,130\n")


def _trace(tmp_path: Path) -> Path:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + ROWS)
    return p


def test_summarize_counts_the_rows_the_trace_skipped(tmp_path: Path) -> None:
    sim = Simulator(open_fabric("leaf-spine:hosts=2"), slurm_policy(), read_openb(_trace(tmp_path)))
    s = summarize(sim.run())
    assert s["jobs"] == 2 and s["skipped"] == 3
    assert s["skipped_by"] == {NOT_GPU: 2, NEVER_SCHEDULED: 1}
    assert s["jobs"] == s["finished"] + s["timeouts"] + s["unfinished"] + s["rejected"]


def test_a_generated_workload_skips_nothing() -> None:
    fab = open_fabric("leaf-spine:hosts=2")
    work = gang_workload(jobs=5, cluster_gpus=len(fab.gpus), seed=1)
    s = summarize(Simulator(fab, slurm_policy(), work).run())
    assert s["skipped"] == 0 and s["skipped_by"] == {}


def test_results_json_and_compare_show_the_skipped_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    out = tmp_path / "run"
    assert main(["sim", "run", "--trace", f"openb:{_trace(tmp_path)}", "--topology", "leaf-spine:hosts=2",
                 "--out", str(out), "--no-progress", "--no-topology-report", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())["summary"]
    for s in (printed, saved):
        assert s["skipped"] == 3 and s["skipped_by"] == {NOT_GPU: 2, NEVER_SCHEDULED: 1}
    assert main(["sim", "compare", str(out), str(out), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["metrics"]["skipped"] == [3, 3] and cmp["metrics"]["jobs"] == [2, 2]
    assert any(row[0].startswith("trace rows skipped") and row[1:] == ["3", "3"] for row in cmp["rows"])


def test_compare_reads_results_written_before_skipped_rows_were_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["sim", "run", "--trace", f"openb:{_trace(tmp_path)}", "--topology", "leaf-spine:hosts=2",
                 "--out", str(out), "--no-progress", "--no-topology-report", "--json"]) == 0
    data = json.loads((out / "results.json").read_text())
    del data["summary"]["skipped"], data["summary"]["skipped_by"]
    (out / "results.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["sim", "compare", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["skipped"] == [None]
