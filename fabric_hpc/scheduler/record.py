"""A step's input and decisions as JSON: what the agent records per cycle (``--record-cycles``) so that
the same snapshot can be replayed through the simulator's step and the decisions compared.

:func:`input_to_dict` / :func:`input_from_dict` round-trip a :class:`SchedulerInput` (jobs with
their requests, running gangs with their GPUs, start and last checkpoint, the cluster state in the
placement state format, usage, the step's shares, the pass kind); :func:`decisions_digest` is the part of
:class:`Decisions` a driver acts on: starts with their GPUs, victims, and the reasons of the rest.
"""

from __future__ import annotations

from typing import Any

from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import Decisions, Job, PendingJob, RunningJob, SchedulerInput
from fabric_hpc.topology import Fabric

_JOB_FIELDS = ("id", "submit", "walltime", "account", "user", "tier", "duration", "checkpoint_interval")


def _job(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(job, k) for k in _JOB_FIELDS}
    out["request"] = job.request.model_dump_json(exclude_none=True)  # strict model: JSON text round-trips
    return out


def _job_back(d: dict[str, Any]) -> Job:
    return Job(request=Request.model_validate_json(d["request"]), **{k: d[k] for k in _JOB_FIELDS})


def input_to_dict(view: SchedulerInput) -> dict[str, Any]:
    shares = None if view.shares is None else dict(sorted(view.shares.items()))
    return {"now": view.now, "backfill": view.backfill, "usage": dict(sorted(view.usage.items())), "shares": shares,
            "state": view.state.to_dict(),
            "pending": [{"job": _job(p.job), "requeues": p.requeues, "queued_since": p.queued_since,
                         "saved_work": p.saved_work} for p in view.pending],
            "running": [_running(r) for r in view.running]}


def _running(r: RunningJob) -> dict[str, Any]:
    """A running gang; ``preemptible`` only when False (records made before it stay the same)."""
    out = {"job": _job(r.job), "gpus": list(r.gpus), "start": r.start, "last_checkpoint": r.last_checkpoint}
    return out if r.preemptible else {**out, "preemptible": False}


def input_from_dict(fab: Fabric, d: dict[str, Any]) -> SchedulerInput:
    pending = [PendingJob(_job_back(p["job"]), requeues=p["requeues"], queued_since=p["queued_since"],
                          saved_work=p["saved_work"]) for p in d["pending"]]
    running = [RunningJob(_job_back(r["job"]), tuple(r["gpus"]), r["start"], r["last_checkpoint"],
                          preemptible=r.get("preemptible", True)) for r in d["running"]]
    state = ClusterState.from_dict(fab, d["state"], source="recorded cycle")
    shares = d.get("shares")  # absent in records made before shares were recorded
    return SchedulerInput(d["now"], pending, running, state, dict(d["usage"]), backfill=d["backfill"],
                          shares=None if shares is None else dict(shares))


def decisions_digest(d: Decisions) -> dict[str, Any]:
    """Starts (job -> sorted GPUs, in decision order), victims (in order), reasons of the waiting jobs."""
    return {"start": [[job.id, sorted(p.gpus)] for job, p in d.start],
            "preempt": [v.job_id for v in d.preempt],
            "reasons": dict(sorted(d.reasons.items()))}


def replay_cycles(records: list[dict[str, Any]], fab: Fabric, policy: Any) -> list[dict[str, Any]]:
    """Each recorded ``{"input", "decisions"}`` through ``policy.schedule``, in order; returns the
    cycles whose decisions differ (``{"cycle", "now", "recorded", "replayed"}``), [] when all agree."""
    out = []
    for k, rec in enumerate(records):
        got = decisions_digest(policy.schedule(input_from_dict(fab, rec["input"])))
        if got != rec["decisions"]:
            out.append({"cycle": k, "now": rec["input"]["now"], "recorded": rec["decisions"], "replayed": got})
    return out
