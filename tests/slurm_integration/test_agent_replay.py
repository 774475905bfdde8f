"""The agent's cycle on a recorded-and-scaled 2,048-GPU state (no Slurm needed): valid, exact pins,
from the answers of each recorded Slurm version (data/slurm-*/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators

HERE = Path(__file__).parent / "data"
VERSIONS = sorted(p.name.removeprefix("slurm-") for p in HERE.glob("slurm-*"))


def recorded(version: str, rest: bool = False) -> tuple[dict, dict]:
    """(node answer, job answer) recorded from one Slurm: ``sinfo --json`` where it lists nodes
    (22.05), else ``scontrol show nodes --json``; ``squeue --json``; or slurmrestd's answers."""
    d = HERE / f"slurm-{version}"
    if rest:
        names = ("rest-nodes.json", "rest-jobs.json")
    else:
        names = ("scontrol-nodes.json" if (d / "scontrol-nodes.json").exists() else "sinfo.json", "squeue.json")
    return json.loads((d / names[0]).read_text()), json.loads((d / names[1]).read_text())


@pytest.mark.parametrize("rest", [False, True], ids=["cli", "rest"])
@pytest.mark.parametrize("version", VERSIONS)
def test_cycle_on_2048_gpus(tmp_path, version, rest):
    fab = build(generators.superpod(sus=8))
    assert len(fab.gpus) == 2048
    nodes, jobs = recorded(version, rest)
    s, q = scale_recording(nodes, jobs, fab.hosts, pending=100, busy_fraction=0.5)
    client = ReplayClient(s, q)
    agent = Agent(client, fab, AgentConfig(state_dir=str(tmp_path)))
    res = agent.cycle()
    assert res.pending == 100 and res.started
    busy = set(fab.hosts[:128])
    pins = [a for a in client.actions if a[0] == "update" and a[2].get("StartTime") == "now"]
    assert len(pins) == len(res.started)
    used: set[str] = set()
    requested = {j.job_id: j.nodes for j in client.jobs()}
    for _, job_id, fields in pins:
        from fabric_hpc.hostlist import expand

        hosts = expand(fields["ReqNodeList"])
        assert len(hosts) == requested[job_id]  # exactly -N names, never a longer list
        assert not busy & set(hosts)
    for s_ in res.started:  # no GPU given twice within one cycle
        assert not used & set(s_["gpus"])
        used |= set(s_["gpus"])
