"""Admin probe 5, tiers and usage (both found on 22.05 and 25.11):

1. ``-p debug,lo --comment=fabric:tier=high`` with ``debug`` and ``lo`` mapped got tier ``high`` (the
   whole string ``debug,lo`` matched no entry, so the comment won) and preempted a spot gang;
2. ``fabric slurm report`` showed the comment's tier, not the agent's (it read no tier map);
3. ``--usage-source slurm`` without slurmdbd took ``sshare``'s header-only answer: every account
   weighed the same, with no ``agent.usage_error`` and no ledger fallback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node, SlurmError
from fabric_hpc.slurm.sshare import FIELDS, NoAccounting, read_usage
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.usage_source import UsageSource
from fabric_hpc.slurm.view import split_options
from fabric_hpc.topology import build, generators

PROBE_MAP = ["partition:lo=spot", "partition:debug=normal", "partition:hi=high"]
#: `sshare -a -P -o ...` on the 22.05 and 25.11 test clusters without slurmdbd (probe 5's log)
HEADER_ONLY = "|".join(FIELDS) + "\n"


def _job(partition: str, comment: str = "fabric:tier=high", qos: str = "", state: str = "PENDING") -> Job:
    return Job(7, "m", state=state, partition=partition, qos=qos, nodes=2, gpus_per_node=8, comment=comment,
               submit_time=100.0)


@pytest.mark.parametrize(("partition", "tier"), [
    ("debug,lo", "spot"), ("lo,debug", "spot"), ("debug,hi", "normal"), ("hi", "high"),
    ("debug, elsewhere", "normal"),  # an unmapped one does not count: the mapped one decides
    ("elsewhere,other", "high"),  # none mapped: the comment's word, as for one unmapped partition
])
def test_a_multi_partition_job_gets_the_lowest_tier_of_its_mapped_partitions(partition: str,
                                                                              tier: str) -> None:
    """Before: ``debug,lo`` was looked up whole, matched nothing, and the comment's ``high`` won."""
    tiers = TierMap.parse(PROBE_MAP)
    assert tiers.tier("", partition, "high") == tier
    assert split_options(_job(partition), tiers)[1] == tier  # what the agent's view uses


def test_a_qos_list_gets_the_lowest_mapped_qos_and_partition_names_the_lowest_tier() -> None:
    tiers = TierMap.parse(["qos:urgent=high", "qos:cheap=spot", "partition:lo=spot"])
    assert tiers.tier("urgent,cheap", "lo", "high") == "spot"
    assert tiers.tier("urgent,plain", "lo", None) == "high"  # a mapped QOS still beats the partition
    assert tiers.tier("plain,other", "lo", "high") == "spot"
    empty = TierMap()
    assert empty.tier("", "high,spot", None) == "spot"  # partitions named as tiers: the lowest
    assert empty.tier("", "high", None) == "high" and empty.tier("", "debug", None) == "normal"


def _state_dir(tmp_path: Path, records: list[dict], status: dict | None = None) -> Path:
    d = tmp_path / "agent"
    d.mkdir()
    (d / "decisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (d / "status.json").write_text(json.dumps(status))
    return d


def _tiers_in_report(state_dir: Path) -> tuple[dict[str, str], dict]:
    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))
    nodes = [Node(name=h, state="idle", gpus=8) for h in fab.hosts]
    jobs = [Job(1, "s", state="RUNNING", partition="lo", comment="fabric:tier=high", nodes=1, gpus_per_node=8,
                node_list=(fab.hosts[0],), gpus={fab.hosts[0]: tuple(range(8))}, start_time=50.0),
            _job("debug,lo")]
    agent = report.read_agent_log(state_dir)
    data = report.build(fab, nodes, jobs, now=200.0, agent=agent).data
    return {r["job"]: r["tier"] for r in data["running"] + data["pending"]}, data


def test_the_report_takes_the_agents_tier_map_from_its_start_record(tmp_path: Path) -> None:
    """Before: job 1 in ``lo`` (spot for the agent) was shown as ``high``, its comment's word."""
    old = {"event": "agent.start", "ts": 10.0, "config": {"tier_map": ["partition:lo=high"]}}
    start = {"event": "agent.start", "ts": 20.0, "config": {"tier_map": PROBE_MAP, "state_dir": "x"}}
    tiers, data = _tiers_in_report(_state_dir(tmp_path, [old, start, {"event": "agent.cycle", "ts": 21.0}]))
    assert tiers == {"1": "spot", "7": "spot"}
    assert data["tier_map"] == {"entries": sorted(PROBE_MAP), "from": "the agent.start record of "
                                "1970-01-01 00:00:20 UTC"}
    assert not [w for w in data["warnings"] if "tier map" in w]


def test_the_report_falls_back_to_status_json_and_says_when_it_has_no_tier_map(tmp_path: Path) -> None:
    cycle = {"event": "agent.cycle", "ts": 21.0}
    d = _state_dir(tmp_path, [cycle], status={"ts": 30.0, "tier_map": PROBE_MAP})
    tiers, data = _tiers_in_report(d)  # the start record rotated out of the tail: the agent's status file
    assert tiers == {"1": "spot", "7": "spot"} and data["tier_map"]["from"].startswith(str(d / "status.json"))
    (d / "status.json").write_text(json.dumps({"ts": 30.0}))  # an agent from before tier_map was in it
    tiers, data = _tiers_in_report(d)
    assert tiers == {"1": "high", "7": "high"} and data["tier_map"] == {"entries": None, "from": None}
    assert any("tier map was not found" in w for w in data["warnings"])
    bad = {"event": "agent.start", "ts": 20.0, "config": {"tier_map": ["partition:lo=gold"]}}
    (d / "decisions.jsonl").write_text(json.dumps(bad) + "\n")
    tiers, data = _tiers_in_report(d)
    assert tiers["1"] == "high" and any("tier_map is damaged" in w and "gold" in w for w in data["warnings"])


def test_without_a_state_dir_the_report_keeps_the_comments_tier(tmp_path: Path) -> None:
    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))
    data = report.build(fab, [], [_job("debug,lo")], now=200.0).data
    assert data["pending"][0]["tier"] == "high" and data["tier_map"] == {"entries": None, "from": None}
    assert not [w for w in data["warnings"] if "tier" in w]


class _Recorded:
    """Slurm's recorded answers by argv prefix (these runs need no cluster: the answers are real)."""

    def __init__(self, answers: dict[str, str | SlurmError]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, argv: Sequence[str]) -> str:
        cmd = " ".join(argv)
        self.asked.append(cmd)
        found = next(v for k, v in self.answers.items() if cmd.startswith(k))
        if isinstance(found, SlurmError):
            raise found
        return found


_NO_JSON = SlurmError("`sshare -a --json` exited 1: sshare: unrecognized option '--json'")


def test_an_sshare_answer_without_associations_is_no_accounting_with_the_fix() -> None:
    with pytest.raises(NoAccounting, match="lists no user association") as err:
        read_usage(_Recorded({"sshare -a --json": _NO_JSON, "sshare -a -P": HEADER_ONLY}))
    assert "accounting_storage/slurmdbd" in err.value.hint and "usage_source = ledger" in err.value.hint
    with pytest.raises(NoAccounting):
        read_usage(_Recorded({"sshare -a --json": '{"shares": {"shares": []}, "errors": []}'}))
    root_only = "|".join(FIELDS) + "\nroot|||0|cpu=0\n"  # an account row alone: still no user association
    with pytest.raises(NoAccounting):
        read_usage(_Recorded({"sshare -a --json": _NO_JSON, "sshare -a -P": root_only}))
    users = root_only + " alpha|root|1|60|gres/gpu=2\n"
    found = read_usage(_Recorded({"sshare -a --json": _NO_JSON, "sshare -a -P": users}))
    assert found.usage == {"alpha": 120.0}


def test_usage_source_slurm_without_accounting_falls_back_to_the_ledger_once(tmp_path: Path) -> None:
    """Before: status.json said ``usage_source: slurm`` with every account at 0, and no event."""
    events: list[tuple[str, dict]] = []
    run = _Recorded({"sshare -a --json": _NO_JSON, "sshare -a -P": HEADER_ONLY})
    source = UsageSource("slurm", AgentUsage(tmp_path), run, lambda w, **f: events.append((w, f)))
    source.usage(0.0, {"alpha": 8})
    assert source.usage(10.0, {"alpha": 8})["alpha"] == pytest.approx(80, rel=1e-3)
    assert source.active == "ledger" and source.status()["usage_source"] == "ledger"
    assert [w for w, _ in events] == ["usage_error", "usage_source"]  # the same error: not again per cycle
    err = events[0][1]
    assert err["fallback"] == "ledger" and "no user association" in err["error"]
    assert "accounting_storage/slurmdbd" in err["hint"]
