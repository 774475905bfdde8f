"""What a new user's probe of ``fabric sim``, ``fabric place`` and the benchmarks found: the options
that change a replay's workload are recorded and compared, contention can be switched off from the
CLI, messages show what was written, and ``python -m benchmarks.topology --help`` runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.sim.report import comparison_warnings

ROOT = Path(__file__).resolve().parents[2]
TIRESIAS = str(ROOT / "data" / "traces" / "tiresias_60_job.csv")


def _run(out: Path, *flags: str, trace: str = f"tiresias:{TIRESIAS}",
         topology: str = "leaf-spine:hosts=8") -> dict:
    assert main(["sim", "run", "--trace", trace, "--topology", topology, "--out", str(out), "--no-progress",
                 "--no-topology-report", "--json", *flags]) == 0
    return json.loads((out / "results.json").read_text())


def _compare(capsys: pytest.CaptureFixture[str], *dirs: Path) -> list[str]:
    capsys.readouterr()
    assert main(["sim", "compare", *map(str, dirs), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["warnings"]


def test_results_record_the_workload_options_and_compare_warns_when_they_differ(tmp_path, capsys):
    base = _run(tmp_path / "base")
    assert {k: base["config"][k] for k in ("time_scale", "limit", "gpus_per_host")} == \
        {"time_scale": 1.0, "limit": None, "gpus_per_host": 8}
    scaled = _run(tmp_path / "scaled", "--time-scale", "3")
    assert scaled["config"]["time_scale"] == 3.0
    assert scaled["summary"]["finished"] == base["summary"]["finished"]  # same jobs: only the scale differs
    warnings = _compare(capsys, tmp_path / "base", tmp_path / "scaled")
    assert warnings == ["the runs used different --time-scale (time_scale: base: 1.0, scaled: 3.0): their "
                        "figures are not of the same workload"]
    hosts = _run(tmp_path / "hosts", "--gpus-per-host", "4")
    assert hosts["config"]["gpus_per_host"] == 4
    assert any("--gpus-per-host (gpus_per_host: base: 8, hosts: 4)" in w
               for w in _compare(capsys, tmp_path / "base", tmp_path / "hosts"))
    # --limit changes the jobs: both the option and the finished counts are named
    limited = _run(tmp_path / "limited", "--limit", "50")
    assert limited["config"]["limit"] == 50
    warnings = _compare(capsys, tmp_path / "base", tmp_path / "limited")
    assert any("--limit (limit: base: all jobs, limited: 50)" in w for w in warnings)
    assert any(w.startswith("the runs finished different numbers of jobs (base: 60, limited: 50)")
               for w in warnings)
    page = (tmp_path / "report.html").read_text()
    assert "<td>--limit</td><td>all jobs</td><td>50</td>" in page


def test_compare_warns_on_different_finished_counts_alone():
    """openb 7063 vs 7062: nothing rejected, the configs agree, one job fewer finished."""
    def run(finished: int) -> dict:
        return {"trace": "openb:x.csv", "config": {"fabric": "f"},
                "summary": {"rejected": 0, "finished": finished}}

    assert comparison_warnings([run(7063), run(7063)], ["a", "b"]) == []
    assert comparison_warnings([run(7063), run(7062)], ["a", "b"]) == [
        "the runs finished different numbers of jobs (a: 7063, b: 7062): their JCT, waits and slowdowns "
        "cover different jobs"]
    # a results file written before the options were recorded shows "?" beside one that has them
    new = run(7063) | {"config": {"fabric": "f", "time_scale": 2.0}}
    assert comparison_warnings([run(7063), new], ["old", "new"]) == [
        "the runs used different --time-scale (time_scale: old: ?, new: 2.0): their figures are not of the "
        "same workload"]
