"""A :class:`SlurmClient` that answers from recorded ``sinfo --json`` / ``squeue --json`` texts.

Used by the benchmark (agent cycles on a simulated 2,048-GPU state built from answers recorded on
the live cluster) and by tests of the agent's logic. Reads go through the same parsers as the
``cli`` backend; actions are recorded in :attr:`ReplayClient.actions`, not performed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fabric_hpc.slurm.cli_backend import _list, job_from_json, node_from_json
from fabric_hpc.slurm.contract import Job, Node, SlurmClient


class ReplayClient(SlurmClient):
    backend = "replay"

    def __init__(self, sinfo_json: str, squeue_json: str) -> None:
        self.sinfo_json, self.squeue_json = sinfo_json, squeue_json
        self.actions: list[tuple[str, int, dict[str, Any]]] = []

    def nodes(self) -> list[Node]:
        return [node_from_json(n) for n in _list(json.loads(self.sinfo_json), "nodes", "recorded sinfo --json")]

    def jobs(self) -> list[Job]:
        return [job_from_json(j) for j in _list(json.loads(self.squeue_json), "jobs", "recorded squeue --json")]

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        self.actions.append(("submit", 0, {"args": list(args)}))
        return 0

    def update(self, job_id: int, **fields: str) -> None:
        self.actions.append(("update", int(job_id), dict(fields)))

    def hold(self, job_id: int) -> None:
        self.actions.append(("hold", int(job_id), {}))

    def release(self, job_id: int) -> None:
        self.actions.append(("release", int(job_id), {}))

    def requeue(self, job_id: int) -> None:
        self.actions.append(("requeue", int(job_id), {}))

    def cancel(self, job_id: int) -> None:
        self.actions.append(("cancel", int(job_id), {}))


def scale_recording(sinfo: dict[str, Any], squeue: dict[str, Any], hosts: list[str], *, pending: int,
                    busy_fraction: float = 0.5, gpus_per_host: int = 8) -> tuple[str, str]:
    """Recorded answers re-targeted at a larger fabric: records are copied from the live cluster's
    answers (same fields and formats) with names, ids and counts rewritten.

    ``busy_fraction`` of the hosts run a whole-host job; ``pending`` fabric gangs (sizes taken in
    turn from the recorded pending jobs) wait.
    """
    node_t = sinfo["nodes"][0]
    run_t = next(j for j in squeue["jobs"] if j["job_state"] == "RUNNING")
    pend_t = [j for j in squeue["jobs"] if j["job_state"] == "PENDING"]
    busy = set(hosts[: int(len(hosts) * busy_fraction)])
    idx = f"gpu:h100:{gpus_per_host}(IDX:0-{gpus_per_host - 1})"
    nodes = [{**node_t, "name": h, "state": "allocated" if h in busy else "idle",
              "gres_used": idx if h in busy else "gpu:h100:0(IDX:N/A)"} for h in hosts]
    jobs = [{**run_t, "job_id": 1 + i, "nodes": h, "node_count": 1, "gres_detail": [idx], "comment": ""}
            for i, h in enumerate(sorted(busy))]
    for k in range(pending):
        jobs.append({**pend_t[k % len(pend_t)], "job_id": 100_000 + k})
    return json.dumps({**sinfo, "nodes": nodes}), json.dumps({**squeue, "jobs": jobs})
