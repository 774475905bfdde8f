"""``fabric slurm report`` counts a pending gang as waiting for GPUs only when Slurm could start it:
a held gang and a gang whose dependency is unmet are not waiting, also in the window after an update
of the job where Slurm's reason reads ``None`` (the dependency text and priority 0 still say so)."""

from __future__ import annotations

from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.topology import build, generators


def test_held_and_dependent_gangs_are_not_waiting_for_gpus():
    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))
    nodes = [Node(name=h, state="idle", gpus=8) for h in fab.hosts]
    gang = {"state": "PENDING", "nodes": 2, "gpus_per_node": 8, "comment": "fabric", "submit_time": 100.0}
    jobs = [Job(1, "free", reason="Resources", **gang),
            Job(2, "after", reason="None", dependency="afterok:1(unfulfilled)", **gang),
            Job(3, "dep", reason="Dependency", **gang),
            Job(4, "held", reason="None", priority=0, **gang)]
    rep = report.build(fab, nodes, jobs, now=200.0, backend="test")
    rows = {p["job"]: p["blocked"] for p in rep.data["pending"]}
    assert rows == {"1": None, "2": "dependency", "3": "dependency", "4": "held"}
    assert rep.data["health"]["waiting_gangs"] == 1 and rep.data["health"]["waiting_gpus"] == 16
