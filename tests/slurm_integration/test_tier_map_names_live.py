"""``tier_map`` names against a live Slurm (rules: tests/slurm/test_tier_map_names.py): ``fabric agent check``
fails on a partition or QOS Slurm does not have (before: "config ok", and the agent started silently), the
agent writes ``agent.tier_map_unknown`` at its start, and ``sacctmgr add qos Urgent`` (stored ``urgent``) is
found for ``qos:Urgent=high``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.topology import save_spec
from tests.slurm_integration.conftest import agent_on
from tests.slurm_integration.test_tier_probe_fixes_live import agent_check, parted, small  # noqa: F401

pytestmark = [pytest.mark.slurm]


def _check(c: Any, topology: Path, state_dir: Path, tmp_path: Path,
           tier_map: Sequence[str]) -> tuple[int, dict]:
    return agent_check(c, topology, state_dir, tmp_path / "agent.toml",
                       f'usage_source = "ledger"\ntier_map = {json.dumps(list(tier_map))}\n', "tier map")


def test_unknown_partitions_fail_the_check_and_are_logged_at_start(parted, tmp_path):  # noqa: F811
    c = parted
    with agent_on(c, c.topology_file) as a:
        code, row = _check(c, c.topology_file, a.state_dir, tmp_path,
                           ["partition:nosuch=high", "partition:hi =high"])
        assert code == 3 and not row["ok"], row
        named = row["detail"].split("partitions:")[0]
        assert "no partition 'nosuch'" in named and "'hi'" not in named
        code, row = _check(c, c.topology_file, a.state_dir, tmp_path, ["partition:hi =high", "qos:scav=spot"])
        assert row["ok"] and "QOS not checked" in row["detail"], row  # no slurmdbd here
        a.extra = ("--tier-map", "partition:nosuch=high", "--tier-map", "partition:lo=spot")
        a.start()
        a.wait_cycles(a.cycles() + 1)
        log = read_json_lines(a.state_dir / "decisions.jsonl")
        events = [e for e in log if e["event"] == "agent.tier_map_unknown"]
        assert len(events) == 1 and events[0]["entries"][0].startswith("partition:nosuch=high: no partition")


def test_a_qos_added_with_capitals_is_found(slurm_accounting_cluster, slurm_accounting_fabric, tmp_path):
    c = slurm_accounting_cluster
    c.sacctmgr("add", "qos", "Urgent")
    assert "urgent" in c.run(["sacctmgr", "-nP", "show", "qos", "format=name"]).stdout.split()
    topology = tmp_path / "topology.yaml"
    save_spec(slurm_accounting_fabric.spec, topology)
    (tmp_path / "agent").mkdir(mode=0o750)
    code, row = _check(c, topology, tmp_path / "agent", tmp_path, ["qos:Urgent=high"])
    assert row["ok"], row
    code, row = _check(c, topology, tmp_path / "agent", tmp_path, ["qos:Urgent=high", "qos:nosuch=spot"])
    named = row["detail"].split("QOS:")[0]
    assert code != 0 and not row["ok"] and "no QOS 'nosuch'" in named and "'urgent'" not in named
