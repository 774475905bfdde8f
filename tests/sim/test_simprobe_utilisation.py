"""Utilisation over an empty window (no job that was not rejected ever ended, or every job ended
within the instant it arrived) is undefined, like the other figures over no jobs: null in results.json,
"–" in tables, never a 0.0 that reads as an idle cluster measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.scheduler import slurm_policy
from fabric_hpc.sim import Simulator, read_tiresias, summarize
from fabric_hpc.topology import open_fabric

HEAD = "job_id,num_gpu,submit_time,duration\n"
FABRIC = "leaf-spine:hosts=2,hosts_per_leaf=2"


def _summary(tmp_path: Path, body: str) -> dict:
    p = tmp_path / "t.csv"
    p.write_text(HEAD + body)
    return summarize(Simulator(open_fabric(FABRIC), slurm_policy(), read_tiresias(p)).run())


def test_utilisation_is_undefined_when_every_job_was_rejected(tmp_path: Path) -> None:
    s = _summary(tmp_path, "1,64,0,100\n2,32,5,100\n")
    assert s["rejected"] == 2
    assert math.isnan(s["gpu_utilisation"])


def test_utilisation_is_undefined_over_a_window_of_no_time(tmp_path: Path) -> None:
    s = _summary(tmp_path, "1,4,0,0\n2,8,0,0\n")  # both ran 0 s at t = 0
    assert s["finished"] == 2
    assert math.isnan(s["gpu_utilisation"])


def test_utilisation_of_a_real_window_is_unchanged(tmp_path: Path) -> None:
    s = _summary(tmp_path, "1,64,0,100\n2,8,10,100\n")  # the rejected 64-GPU job opens no window
    assert s["gpu_utilisation"] == pytest.approx(8 / 16)


def test_sim_run_writes_it_as_null_and_lists_it_undefined(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(HEAD + "1,64,0,100\n")
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "-t", FABRIC, "--out", str(tmp_path / "o"),
                 "--no-progress", "--no-topology-report", "--json"]) == 0
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["summary"]["gpu_utilisation"] is None
    assert "summary.gpu_utilisation" in data["undefined"]
    assert json.loads(capsys.readouterr().out)["gpu_utilisation"] is None
