"""``--json`` never prints NaN or Infinity: null, and the paths named under "undefined"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from fabric_hpc.cli.main import cli
from fabric_hpc.cli.output import dumps_json, print_json
from tests.strict_json import strict_loads


def test_non_finite_values_become_null_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"mean_jct_s": math.inf, "p99": np.float64("nan"), "ok": 1.5,
                "rows": [{"x": -math.inf}, {"x": 2}], "n": np.int64(3)})
    cap = capsys.readouterr()
    doc = strict_loads(cap.out)
    assert doc == {"mean_jct_s": None, "p99": None, "ok": 1.5, "rows": [{"x": None}, {"x": 2}], "n": 3,
                   "undefined": ["mean_jct_s", "p99", "rows[0].x"]}
    assert "3 value(s) undefined" in cap.err and "rows[0].x" in cap.err


def test_lists_and_plain_values() -> None:
    text, undefined = dumps_json([1.0, math.nan, {"a": (math.inf, 2)}])
    assert strict_loads(text) == [1.0, None, {"a": [None, 2]}]
    assert undefined == ["[1]", "[2].a[0]"]
    assert dumps_json({"a": 1}) == ('{\n  "a": 1\n}', [])


def test_strict_hook_sees_cli_json(strict_json_outputs: list[str]) -> None:
    """The autouse hook of tests/conftest.py records what commands print with --json."""
    result = CliRunner().invoke(cli, ["topology", "show", "nvl72:racks=1", "--host", "r001-h02", "--json"])
    assert result.exit_code == 0, result.output
    assert len(strict_json_outputs) == 1
    assert strict_loads(strict_json_outputs[0]) == strict_loads(result.output)


def test_sim_run_json_and_results_file_are_strict(tmp_path, capsys, monkeypatch) -> None:
    """A replay whose metrics are undefined/infinite: --json and results.json say null."""
    from pathlib import Path

    from fabric_hpc.cli.main import main
    from fabric_hpc.sim import metrics, results

    real = metrics.summarize

    def summarize(result):
        return {**real(result), "mean_jct_s": math.inf, "p99_wait_s": math.nan}

    monkeypatch.setattr(results, "summarize", summarize)
    monkeypatch.setattr(metrics, "summarize", summarize)
    trace = Path(__file__).resolve().parents[2] / "data" / "traces" / "tiresias_60_job.csv"
    code = main(["sim", "run", "--trace", f"tiresias:{trace}", "--topology", "leaf-spine:hosts=8",
                 "--policy", "slurm", "--out", str(tmp_path / "o"), "--no-progress", "--json"])
    assert code == 0
    cap = capsys.readouterr()
    printed = strict_loads(cap.out)
    stored = strict_loads((tmp_path / "o" / "results.json").read_text())
    assert stored["summary"]["mean_jct_s"] is None and stored["summary"]["p99_wait_s"] is None
    assert printed["mean_jct_s"] is None and printed["undefined"] == ["mean_jct_s", "p99_wait_s"]
    assert "2 value(s) undefined" in cap.err


def test_with_json_an_error_is_json_on_stdout_too(capsys):
    """A script reading stdout gets a JSON document for failures as well: a bad request (3), an
    infeasible placement (4, with its explanation), a usage error (2); never two documents."""
    import json

    from fabric_hpc.cli.main import main

    assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=0", "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 3 and "gpus" in out["error"] and out["hint"]
    assert main(["place", "-t", "superpod:sus=1", "-r", "nodes=99,gpus=8", "--json"]) == 4
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 4 and out["explanation"]["constraint"] == "eligibility"
    assert main(["place", "--bogus", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["exit_code"] == 2 and out["hint"] == "fabric place --help"
    assert main(["topology", "validate", "/nonexistent.yaml", "--json"]) == 3
    assert isinstance(json.loads(capsys.readouterr().out), list)  # its own report, not a second document
