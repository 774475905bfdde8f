"""What a new user's probe of ``fabric sim``, ``fabric place`` and the benchmarks found: the options
that change a replay's workload are recorded and compared, contention can be switched off from the
CLI, messages show what was written, and ``python -m benchmarks.topology --help`` runs nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim.report import comparison_warnings
from fabric_hpc.topology import generators, open_fabric, save_spec

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
    assert {k: base["config"][k] for k in ("time_scale", "limit", "gpus_per_host", "contention", "ecmp")} == \
        {"time_scale": 1.0, "limit": None, "gpus_per_host": 8, "contention": True, "ecmp": False}
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


def _oversubscribed(path: Path) -> str:
    """Eight 8-GPU hosts, two per leaf, leaf uplinks at a quarter of what the hosts can send."""
    spec = generators.leaf_spine(hosts=8, hosts_per_leaf=2)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / 4}) if g.uplink_gbps else g
              for g in spec.network.groups]
    save_spec(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}), path)
    return str(path)


def test_contention_can_be_switched_off_and_ecmp_on_from_the_cli(tmp_path, capsys):
    fab = _oversubscribed(tmp_path / "fab.yaml")
    trace = "synthetic:jobs=150,load=1.5,seed=2"
    on = _run(tmp_path / "on", "--policy", "slurm", trace=trace, topology=fab)
    off = _run(tmp_path / "off", "--policy", "slurm", "--no-contention", trace=trace, topology=fab)
    ecmp = _run(tmp_path / "ecmp", "--policy", "slurm", "--ecmp", trace=trace, topology=fab)
    assert [r["config"]["contention"] for r in (on, off, ecmp)] == [True, False, True]
    assert [r["config"]["ecmp"] for r in (on, off, ecmp)] == [False, False, True]
    assert on["config"]["gpus_per_host"] is None  # a synthetic workload's host size is in its reference
    # shared uplinks slow the scattered gangs only with contention on
    assert off["summary"]["mean_stretch"] < on["summary"]["mean_stretch"]
    assert off["summary"]["mean_jct_s"] != on["summary"]["mean_jct_s"]
    warnings = _compare(capsys, tmp_path / "on", tmp_path / "off")
    assert any("--contention/--no-contention (contention: on: True, off: False)" in w for w in warnings)
    warnings = _compare(capsys, tmp_path / "on", tmp_path / "ecmp")
    assert any("--ecmp (ecmp: on: False, ecmp: True)" in w for w in warnings)
    capsys.readouterr()
    assert main(["sim", "run", "--help"]) == 0
    assert "--no-contention" in capsys.readouterr().out


def test_api_without_fabric_defaults_rejects_and_says_so_in_the_summary():
    """The documented pitfall (docs/scheduler.md): a synthetic workload not sized to nvl72:racks=4."""
    from fabric_hpc.scheduler import fabric_policy
    from fabric_hpc.sim import Simulator, load_trace, summarize
    from fabric_hpc.sim.synthetic import fabric_sizes

    fab = open_fabric("nvl72:racks=4")
    unsized = summarize(Simulator(fab, fabric_policy(), load_trace("synthetic:jobs=300")).run())
    assert unsized["rejected"] == 157 and "157 can never fit this fabric" in unsized["note"]
    sized = load_trace("synthetic:jobs=300", fabric_defaults=fabric_sizes(fab))
    assert summarize(Simulator(fab, fabric_policy(), sized).run())["rejected"] == 0
    doc = (ROOT / "docs" / "scheduler.md").read_text()
    assert "fabric_defaults=fabric_sizes(fab)" in doc and "157 of the 300 jobs" in doc


@pytest.mark.parametrize("ref, message, hint", [
    ("superpod:sus=1e3", "generator 'superpod': sus=1e3 must be a whole number like 1000",
     "superpod:sus=1000"),
    ("superpod:sus=4.0", "generator 'superpod': sus=4.0 must be a whole number like 4", "superpod:sus=4"),
    ("superpod:sus=1.5", "generator 'superpod': sus=1.5 must be a whole number", "e.g. superpod:sus=4"),
])
def test_a_generator_parameter_is_shown_as_written(ref, message, hint):
    with pytest.raises(ConfigError) as err:
        open_fabric(ref)
    assert err.value.message == message and hint in (err.value.hint or "")


def test_place_names_an_empty_request(capsys):
    for request in ("", "  "):
        assert main(["place", "-t", "superpod:sus=1", "-r", request]) == 3
        err = capsys.readouterr().err
        assert f"--request {request!r} is empty" in err and "needs --topology" not in err
        assert "-r 'nodes=4,gpus=8,within=leaf'" in err
    assert main(["place", "-t", "", "-r", "gpus=8"]) == 3
    assert "--topology '' is empty" in capsys.readouterr().err
    assert main(["place", "-r", "gpus=8"]) == 3  # missing, not empty: the missing one is named
    err = capsys.readouterr().err
    assert "fabric place needs --topology\n" in err and "-t dgx-h100-superpod-4su" in err


def test_topology_benchmark_help_runs_nothing_and_no_write_leaves_docs(tmp_path, monkeypatch, capsys):
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.topology", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--no-write" in proc.stdout and proc.stdout.startswith("usage:")
    from benchmarks.topology import __main__ as bench

    monkeypatch.setattr(bench, "CASES", [("leaf-spine", {"hosts": 2})])
    assert bench.main(["--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| leaf-spine-2 | 2 | 16 |" in out and "not measured (no 16,384-GPU case ran)" in out
    assert docs.read_bytes() == before


def test_compare_warns_when_the_trace_reader_options_differ(tmp_path):
    """--procs-per-gpu, --swf-queue-tier and --gpus-per-node change the workload too; a run without one
    records it as the default (null), so compare names it."""
    base = _run(tmp_path / "base")
    assert {k: base["config"][k] for k in ("procs_per_gpu", "queue_tiers", "gpus_per_node")} == \
        dict.fromkeys(("procs_per_gpu", "queue_tiers", "gpus_per_node"))
    other = base | {"config": base["config"] | {"procs_per_gpu": 32, "queue_tiers": "1=high"}}
    warnings = comparison_warnings([base, other], ["a", "b"])
    assert any("--procs-per-gpu (procs_per_gpu: a: default, b: 32)" in w for w in warnings), warnings
    assert any("--swf-queue-tier (queue_tiers: a: default, b: 1=high)" in w for w in warnings), warnings
