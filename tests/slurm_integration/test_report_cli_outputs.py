"""``fabric slurm report`` never writes over what it reads: ``--out``/``--png`` naming the fabric model
(it was replaced by the HTML page, exit 0), each other, or the agent's audit log or status file is
exit 3 before Slurm is asked anything, and the file is left as it was. No Slurm needed: the check
comes first (without it, these runs would end in Slurm's error, exit 5, or write the file)."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology import generators, save_spec


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "cluster.yaml"
    save_spec(generators.leaf_spine(4, hosts_per_leaf=2), path)
    return path


def _refused(args, capsys, needle: str) -> None:
    assert main(["slurm", "report", *args]) == 3
    err = capsys.readouterr().err
    assert needle in err and "it would be overwritten" in err, err


def test_out_naming_the_fabric_model_is_refused(spec, capsys):
    before = spec.read_bytes()
    _refused(["--topology", str(spec), "--out", str(spec)], capsys, "the input --topology")
    assert spec.read_bytes() == before


def test_png_naming_the_page_is_refused(spec, tmp_path, capsys):
    page = tmp_path / "c.html"
    _refused(["--topology", str(spec), "--out", str(page), "--png", str(page)], capsys, "also --out's output")
    assert not page.exists()


@pytest.mark.parametrize("name", ["decisions.jsonl", "status.json"])
def test_out_naming_the_agents_files_is_refused(spec, tmp_path, capsys, name):
    state_dir = tmp_path / "agent"
    state_dir.mkdir()
    (state_dir / name).write_text('{"event": "agent.start", "ts": 1}\n')
    _refused(["--topology", str(spec), "--state-dir", str(state_dir), "--out", str(state_dir / name)],
             capsys, name)
    assert (state_dir / name).read_text() == '{"event": "agent.start", "ts": 1}\n'
