"""``fabric sim run``'s results directory is never left mixed: an output that cannot be written (a
directory where a run writes topology.html or state.json) is refused before the replay, and
results.json, the file ``compare`` reads, is written last, once the other files are, with the previous
run's removed first, so a run stopped while writing leaves no results.json rather than new results
beside an old topology report (probe 2026-12-07)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import Simulator, load_trace, write_results
from fabric_hpc.scheduler import make_policy
from fabric_hpc.topology import open_fabric

TOPO = "leaf-spine:hosts=2"


def _run(out: Path, trace: str = "synthetic:jobs=5") -> int:
    return main(["sim", "run", "--trace", trace, "--topology", TOPO, "--out", str(out), "--no-progress",
                 "--json"])


@pytest.mark.parametrize("name", ["topology.html", "state.json"])
def test_a_directory_where_a_run_writes_a_file_is_refused_before_the_replay(tmp_path: Path, capsys,
                                                                            name: str) -> None:
    out = tmp_path / "o"
    (out / name / "sub").mkdir(parents=True)
    assert _run(out) == 3
    err = capsys.readouterr().err
    assert f"--out {name}" in err and "directory" in err and "another directory" in err
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written


def test_results_json_is_written_last_and_the_old_one_removed_first(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert _run(out, "synthetic:jobs=5,seed=1") == 0
    old = json.loads((out / "results.json").read_text())
    (out / "topology.html").unlink()
    (out / "topology.html").mkdir()  # the report cannot be written now: the write stops there
    fab = open_fabric(TOPO)
    res = Simulator(fab, make_policy("fabric"), load_trace("synthetic:jobs=7,seed=2")).run()
    with pytest.raises(ConfigError, match="topology.html"):
        write_results(res, out, trace="synthetic:jobs=7,seed=2", topology_report=True)
    assert old["summary"]["jobs"] == 5
    assert not (out / "results.json").exists()  # neither the old results nor new ones beside a stale page
