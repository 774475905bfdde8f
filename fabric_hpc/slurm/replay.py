"""A :class:`SlurmClient` that answers from recorded JSON answers of any supported Slurm.

Used by the benchmark (agent cycles on a simulated 2,048-GPU state built from answers recorded on
the live cluster) and by tests of the agent's logic. Reads go through :mod:`fabric_hpc.slurm.decode`
like the ``cli`` and ``rest`` backends; actions are recorded in :attr:`ReplayClient.actions`, not
performed. The node answer is ``sinfo --json`` of Slurm 22.05, ``scontrol show nodes --json`` of
23.02+ (whose ``sinfo --json`` has no node list) or slurmrestd's ``GET /nodes``; the job answer is
``squeue --json`` or ``GET /jobs``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from fabric_hpc.slurm import decode
from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError, queued


def _load(text: str, what: str) -> Any:
    return decode.load_answer(text, f"{what} is not JSON")


class ReplayClient(SlurmClient):
    backend = "replay"

    def __init__(self, nodes_json: str, jobs_json: str) -> None:
        self.nodes_json, self.jobs_json = nodes_json, jobs_json
        self.actions: list[tuple[str, int, dict[str, Any]]] = []
        self.decoded = decode.Decoders()  # its last answers' records, decoded

    @decode.gc_paused()
    def nodes(self) -> list[Node]:
        found = decode.nodes_answer(_load(self.nodes_json, "recorded nodes"), "recorded nodes",
                                   self.decoded.nodes)
        if found is None:
            raise SlurmError("the recorded node answer is a per-partition sinfo --json (Slurm 23.02+)",
                             hint="record `scontrol show nodes --json` instead")
        return found

    @decode.gc_paused()
    def jobs(self) -> list[Job]:
        """The recorded jobs but the finished ones (:func:`~fabric_hpc.slurm.contract.queued`), as every
        backend lists them: a recorded ``GET /jobs`` holds the jobs that ended within MinJobAge too."""
        return queued(self._recorded(self.decoded.jobs))

    def job(self, job_id: int) -> Job:
        """One recorded job, a finished one too (as ``scontrol show job``)."""
        for j in self._recorded():
            if j.job_id == int(job_id):
                return j
        raise NotFoundError(f"the recording has no job {job_id}", hint="record the job's answer with it")

    def _recorded(self, memo: decode.Decoded | None = None) -> list[Job]:
        return decode.jobs_answer(_load(self.jobs_json, "recorded jobs"), "recorded jobs", memo)

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


def _like(template: Any, value: str | int) -> Any:
    """``value`` in the shape of ``template``: a state list, a number object or a plain value."""
    if isinstance(template, list):
        return [str(value).upper()]
    if isinstance(template, dict):
        return {"set": True, "infinite": False, "number": value}
    return value


def _deferred(job: dict[str, Any], fallback_s: int) -> dict[str, Any]:
    """``job`` with a begin time ``fallback_s`` after its submit time where it had a later one."""
    from fabric_hpc.slurm import decode

    submit, begin = decode.epoch(job, "submit_time", "job"), decode.epoch(job, "eligible_time", "job")
    if submit is None or begin is None or begin <= submit:
        return job
    return {**job, "eligible_time": _like(job["eligible_time"], int(submit) + fallback_s)}


def _is(job: dict[str, Any], state: str) -> bool:
    value = job.get("job_state")
    return (value[:1] == [state]) if isinstance(value, list) else value == state


def scale_recording(nodes: dict[str, Any], jobs: dict[str, Any], hosts: list[str], *, pending: int,
                    busy_fraction: float = 0.5, gpus_per_host: int = 8, running_comment: str = "",
                    pending_comments: Sequence[str] = ("fabric",), fallback_s: int = 60) -> tuple[str, str]:
    """Recorded answers re-targeted at a larger fabric: records are copied from the live cluster's
    answers (same fields and formats, of whichever Slurm recorded them) with names, ids and counts
    rewritten.

    ``busy_fraction`` of the hosts run a whole-host job (comment ``running_comment``: e.g.
    ``fabric:tier=spot`` makes them preemption candidates); ``pending`` fabric gangs (sizes taken in
    turn from the recorded pending jobs, comments in turn from ``pending_comments``) wait. A deferred
    one (its recorded begin time after its submit time) is deferred as job_submit.lua with
    ``fallback_s`` defers it (the agent's default: 60 s), whatever deferral the recording had, so the
    agent takes it for its own deferral, not for a user's ``--begin``.
    """
    node_t = nodes["nodes"][0]
    run_t = next(j for j in jobs["jobs"] if _is(j, "RUNNING"))
    pend_t = [j for j in jobs["jobs"] if _is(j, "PENDING") and j.get("state_reason") != "JobHeldUser"]
    busy = set(hosts[: int(len(hosts) * busy_fraction)])
    idx = f"gpu:h100:{gpus_per_host}(IDX:0-{gpus_per_host - 1})"
    out_nodes = [{**node_t, "name": h, "state": _like(node_t["state"], "allocated" if h in busy else "idle"),
                  "gres_used": idx if h in busy else "gpu:h100:0(IDX:N/A)"} for h in hosts]
    tres = re.sub(r"\d+$", str(gpus_per_host), str(run_t.get("tres_per_node") or ""))  # a whole host
    out_jobs = [{**run_t, "job_id": 1 + i, "nodes": h, "node_count": _like(run_t["node_count"], 1),
                 "tres_per_node": tres, "gres_detail": [idx], "comment": running_comment}
                for i, h in enumerate(sorted(busy))]
    for k in range(pending):
        out_jobs.append({**_deferred(pend_t[k % len(pend_t)], fallback_s), "job_id": 100_000 + k,
                         "comment": pending_comments[k % len(pending_comments)]})
    return json.dumps({**nodes, "nodes": out_nodes}), json.dumps({**jobs, "jobs": out_jobs})
