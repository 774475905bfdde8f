"""``fabric sim compare``'s HTML report: run names drawn literally, the page says what differs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.sim import report as sim_report

TIRESIAS = str(Path(__file__).resolve().parents[2] / "data" / "traces" / "tiresias_60_job.csv")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two replays of the same trace (slurm, fabric) on leaf-spine:hosts=8, one on hosts=4."""
    root = tmp_path_factory.mktemp("runs")
    for name, policy, hosts in (("slurm", "slurm", 8), ("fabric", "fabric", 8), ("small", "fabric", 4)):
        assert main(["sim", "run", "--trace", f"tiresias:{TIRESIAS}", "--topology", f"leaf-spine:hosts={hosts}",
                     "--policy", policy, "--out", str(root / name), "--no-progress", "--json"]) == 0
    return root


def _copy(runs: Path, tmp_path: Path, src: str, name: str) -> str:
    shutil.copytree(runs / src, tmp_path / name)
    return str(tmp_path / name)


def test_math_and_underscore_run_names_reach_every_legend(runs, tmp_path, capsys, monkeypatch):
    legends: list[list[tuple[str, bool]]] = []
    real = sim_report._png

    def spy(fig):
        for ax in fig.axes:
            if ax.get_legend():
                legends.append([t._preprocess_math(t.get_text()) for t in ax.get_legend().get_texts()])
        return real(fig)

    monkeypatch.setattr(sim_report, "_png", spy)
    a, b = _copy(runs, tmp_path, "slurm", "$\\frac$"), _copy(runs, tmp_path, "fabric", "_fabric")
    code = main(["sim", "compare", a, b, "--report", str(tmp_path / "r.html"), "--json"])
    cap = capsys.readouterr()
    assert code == 0 and "Traceback" not in cap.err, cap.err
    assert len(legends) == 3
    for legend in legends:
        assert [(s.lstrip("\u200b"), m) for s, m in legend] == [("$\\frac$", False), ("_fabric", False)]
    assert json.loads(cap.out)["runs"] == ["$\\frac$", "_fabric"]


def test_runs_on_different_fabrics_say_so_on_the_page(runs, tmp_path, capsys):
    out = tmp_path / "mixed.html"
    assert main(["sim", "compare", str(runs / "slurm"), str(runs / "small"), "--report", str(out), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert len(warnings) == 1 and "different fabrics" in warnings[0]
    page = out.read_text()
    assert f"warning: {warnings[0]}" in page
    assert "Fabric: leaf-spine-8" not in page and "Fabrics differ" in page
    assert "<tr><td>fabric</td><td>leaf-spine-8</td><td>leaf-spine-4</td></tr>" in page
    assert "<tr><td>GPUs</td><td>64</td><td>32</td></tr>" in page
    assert page.count("<tr><td>trace</td>") == 1


def test_page_links_each_runs_topology_report_and_warns_of_a_run_given_twice(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    out.parent.mkdir()
    slurm, fabric = str(runs / "slurm"), str(runs / "fabric")
    assert main(["sim", "compare", slurm, fabric, slurm, "--report", str(out), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert warnings == [f"the same run directory was given 2 times: {slurm}, {slurm}"]
    page = out.read_text()
    assert f"warning: {warnings[0]}" in page
    for name in ("slurm", "fabric"):
        href = Path(os.path.relpath(runs / name / "topology.html", out.parent)).as_posix()
        assert page.count(f'<a href="{href}">') == 1  # the run given twice is linked once
        assert (out.parent / href).is_file()
