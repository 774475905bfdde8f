"""``fabric slurm report`` on nodes whose GPU count in Slurm (their GRES) differs from the fabric
model's: a warning names them (as the agent's does), and the model's GPUs Slurm does not have are
drawn as down, not free. Before, 4 nodes with ``gpu:4`` under an 8-GPU model read "32 free" with no
warning (a node without GRES likewise). No Slurm needed: ``report.build`` on constructed answers."""

from __future__ import annotations

import pytest

from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.topology import build, generators

NOW = 1796313800.0


@pytest.fixture(scope="module")
def fab():
    return build(generators.leaf_spine(4, hosts_per_leaf=2))  # n1..n4, 8 GPUs each


def test_gpus_slurm_lacks_are_down_and_named(fab):
    nodes = [Node(name=h, state="idle", gpus=4 if h != "n4" else 0) for h in fab.hosts]
    rep = report.build(fab, nodes, [], now=NOW)
    w = [x for x in rep.data["warnings"] if "GPU count" in x]
    want = "4 node(s) have another GPU count in Slurm than in the fabric model: n1 (Slurm 4, model 8)"
    assert len(w) == 1 and w[0].startswith(want), rep.data["warnings"]
    assert "drawn as down" in w[0]
    states = [rep.occupancy[f"n1/gpu{i}"] for i in range(8)]
    assert states == ["free"] * 4 + ["down"] * 4
    assert {rep.occupancy[f"n4/gpu{i}"] for i in range(8)} == {"down"}
    assert rep.data["health"]["free_gpus"] == 12


def test_a_job_keeps_its_gpus_and_more_gpus_in_slurm_is_a_warning_only(fab):
    nodes = [Node(name=h, state="mixed" if h == "n1" else "idle", gpus=16 if h == "n2" else 8,
                  gpus_used=(0, 1) if h == "n1" else ()) for h in fab.hosts]
    job = Job(job_id=5, name="a", state="RUNNING", node_list=("n1",), gpus={"n1": (0, 1)})
    rep = report.build(fab, nodes, [job], now=NOW)
    assert [x for x in rep.data["warnings"] if "GPU count" in x] == [
        "1 node(s) have another GPU count in Slurm than in the fabric model: n2 (Slurm 16, model 8)"]
    assert [rep.occupancy[f"n1/gpu{i}"] for i in range(3)] == ["5", "5", "free"]
    assert "down" not in rep.occupancy.values()


def test_matching_counts_say_nothing(fab):
    rep = report.build(fab, [Node(name=h, state="idle", gpus=8) for h in fab.hosts], [], now=NOW)
    assert rep.data["warnings"] == []
