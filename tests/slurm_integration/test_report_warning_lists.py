"""The host and GPU lists in ``fabric slurm report``'s warnings say which hosts, never fewer than asked.

A fabric model of 32 hosts Slurm does not know was listed as ``su01-h[01-12] and 20 more`` (the names
were cut before they were compressed), and a job holding more than 12 GPUs the model lacks had the
rest dropped without a word. No Slurm needed: ``report.build`` on constructed answers.
"""

from __future__ import annotations

import pytest

from fabric_hpc.hostlist import count
from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.topology import build, generators

NOW = 1796313800.0


@pytest.fixture(scope="module")
def pod():
    return build(generators.superpod(sus=1))  # su01-h[01-32]


def _warning(rep, start: str) -> str:
    found = [w for w in rep.data["warnings"] if w.startswith(start)]
    assert len(found) == 1, rep.data["warnings"]
    return found[0]


def test_a_whole_range_of_unknown_hosts_is_one_expression(pod):
    nodes = [Node(name=f"n{i}", state="idle", gpus=8) for i in range(1, 5)]
    rep = report.build(pod, nodes, [], now=NOW)
    w = _warning(rep, "the fabric model has 32 host(s) Slurm does not know")
    assert w.endswith(": su01-h[01-32]"), w
    assert _warning(rep, "Slurm knows 4 node(s)").endswith(": n[1-4]")


def test_a_long_list_is_cut_and_counts_the_rest(pod):
    names = [f"x{i}" for i in range(1, 601, 2)]  # 300 names, no two adjacent: no range joins them
    nodes = [Node(name=h, state="idle", gpus=8) for h in pod.hosts + names]
    w = _warning(rep := report.build(pod, nodes, [], now=NOW), "Slurm knows 300 node(s)")
    shown, _, more = w.split(": ", 1)[1].partition(" and ")
    assert len(w) < 400, w
    assert more.endswith(" more"), w
    assert count(shown) + int(more.split()[0]) == 300
    assert rep.data["warnings"] == [w]


def test_every_gpu_the_model_lacks_is_counted(pod):
    job = Job(job_id=7, name="a", state="RUNNING", node_list=("su01-h01",),
              gpus={"su01-h01": tuple(range(8, 24))})  # 16 indices past the host's 8 GPUs
    nodes = [Node(name=h, state="mixed", gpus=8) for h in pod.hosts]
    w = _warning(report.build(pod, nodes, [job], now=NOW),
                 "job 7 holds GPU(s) the fabric model does not have")
    assert "su01-h01/gpu8, " in w and w.endswith(" and 4 more"), w


def test_every_gpu_two_jobs_claim_is_counted(pod):
    jobs = [Job(job_id=j, name="a", state="RUNNING", node_list=("su01-h01", "su01-h02"),
                gpus={"su01-h01": tuple(range(8)), "su01-h02": tuple(range(8))}) for j in (7, 8)]
    nodes = [Node(name=h, state="mixed", gpus=8) for h in pod.hosts]
    w = _warning(report.build(pod, nodes, jobs, now=NOW), "job 8 holds GPU(s) another job holds too")
    assert w.endswith(" and 4 more"), w
