"""A job's ``--constraint`` keeps the agent to the hosts whose features satisfy it, as Slurm keeps itself:
before, the agent ignored it, pinned ``sbatch -N2 --gres=gpu:2 --constraint=fast`` to hosts without ``fast``,
Slurm rejected the pin (``BadConstraints``), the agent handed the job over and Slurm placed it without fabric
(seen live on 25.11.7). Live test: tests/slurm_integration/test_job_constraint_live.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fabric_hpc.hostlist import expand
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import job_from_scontrol
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.view import build_view
from fabric_hpc.slurm.view_hosts import lacking_features
from tests.slurm.test_agent_actions import FAB, Fake, agent, gang

FAST = {"n13", "n14"}


class Featured(Fake):
    """Fake's 16 idle hosts, n13 and n14 with the feature ``fast`` (n15: ``slow``)."""

    def nodes(self) -> list[Node]:
        feats = {"n13": ("h100", "fast"), "n14": ("h100", "fast"), "n15": ("h100", "slow")}
        return [replace(n, features=feats.get(n.name, ("h100",))) for n in super().nodes()]


def _excluded(features: str) -> set[str]:
    view = build_view(FAB, Featured([]).nodes(), [replace(gang(1), features=features)], now=100.0)
    (pending,) = view.pending
    exclude = pending.job.request.exclude
    return set(expand(exclude)) if exclude else set()


def test_a_constraint_keeps_the_job_to_hosts_with_the_feature() -> None:
    everyone = {f"n{i}" for i in range(1, 17)}
    assert _excluded("fast") == everyone - FAST
    assert _excluded("fast&h100") == everyone - FAST
    assert _excluded("fast,h100") == everyone - FAST
    assert _excluded("fast|slow") == everyone - FAST - {"n15"}
    assert _excluded("h100") == set() and _excluded("") == set()


def test_expressions_the_agent_does_not_read_are_left_to_slurm_as_before() -> None:
    nodes = {"n1": ("a",), "n2": ("b",)}
    for expr in ("[a|b]", "a*2", "(a|b)&c", "a&b|c", "!a"):
        assert lacking_features(expr, nodes) == set(), expr
    assert lacking_features("a", nodes) == {"n2"}
    assert lacking_features("a", {"n1": (), "n2": ()}) == set()  # an answer without node features


def test_the_agent_pins_a_constrained_gang_where_slurm_would_start_it(tmp_path: Path) -> None:
    client = Featured([replace(gang(1), features="fast")])
    res = agent(tmp_path, client).cycle()
    [entry] = res.started
    assert set(entry["hosts"]) == FAST, entry


def test_no_host_with_the_features_hands_the_job_to_slurm(tmp_path: Path) -> None:
    client = Featured([replace(gang(1), features="gone")])
    res = agent(tmp_path, client).cycle()
    assert not res.started
    cleared = [f for kind, j, f in client.calls if kind == "update" and j == 1 and "ReqNodeList" in f]
    assert cleared and not cleared[-1]["ReqNodeList"], client.calls


def test_every_backend_reads_the_constraint() -> None:
    line = ("JobId=7 JobName=x UserId=root(0) JobState=PENDING Reason=None NumNodes=2 Features=fast&h100 "
            "DelayBoot=00:00:00 TresPerNode=gres/gpu:2")
    assert job_from_scontrol(line).features == "fast&h100"
    assert job_from_scontrol(line.replace("fast&h100", "(null)")).features == ""
    assert decode.job({"job_id": 7, "job_state": "PENDING", "features": "fast"}).features == "fast"
    assert decode.job({"job_id": 7, "job_state": "PENDING"}).features == ""
