"""The replay client lists jobs as every backend does: without the finished ones (a recorded ``GET /jobs``
holds those that ended within MinJobAge), while job() still finds a finished one. A real recorded answer
of Slurm 25.11 with one of its jobs ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm.replay import ReplayClient

DATA = Path(__file__).parents[1] / "slurm_integration" / "data" / "slurm-25.11"


def _client() -> tuple[ReplayClient, int]:
    answer = json.loads((DATA / "squeue.json").read_text())
    ended = answer["jobs"][0]
    ended["job_state"] = ["COMPLETED"]
    return ReplayClient((DATA / "scontrol-nodes.json").read_text(), json.dumps(answer)), ended["job_id"]


def test_jobs_leaves_out_a_finished_job_and_job_finds_it() -> None:
    client, ended = _client()
    listed = {j.job_id for j in client.jobs()}
    assert ended not in listed and len(listed) == 4
    assert client.job(ended).state == "COMPLETED"
    with pytest.raises(NotFoundError):
        client.job(999999)
