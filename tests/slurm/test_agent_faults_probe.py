"""An admin's live probe of the agent: a spot gang Slurm will not requeue (``--no-requeue``, ``JobRequeue=0``)
was picked as a victim every cycle (a refused requeue and a pin onto its busy hosts each time), and a deferral
Slurm refused yet applied (a job of an INACTIVE partition) was read next cycle as the user's ``--begin`` and
pushed ``fallback_s`` later every cycle. Each test failed before its fix. Live:
tests/slurm_integration/test_agent_faults_probe_live.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.actions import MAX_DEFER_FAILURES, MAX_PIN_FAILURES
from fabric_hpc.slurm.cli_backend import job_from_scontrol
from fabric_hpc.slurm.contract import Job, SlurmError
from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm
from tests.slurm.test_agent_actions import Fake, agent, events

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data"
HOSTS = tuple(f"n{i}" for i in range(1, 17))


def spot(job_id: int, hosts: tuple[str, ...], **kw) -> Job:
    return Job(job_id=job_id, name=f"s{job_id}", state="RUNNING", comment="fabric:tier=spot",
               nodes=len(hosts), gpus_per_node=8, node_list=hosts, gpus={h: tuple(range(8)) for h in hosts},
               submit_time=time.time() - 600, start_time=time.time() - 600, **kw)


def high(job_id: int) -> Job:
    now = time.time()
    return Job(job_id=job_id, name="high", state="PENDING", comment="fabric:tier=high", nodes=2,
               gpus_per_node=8, submit_time=now, begin_time=now + 8)


# -- the requeue flag, read by every backend ---------------------------------------------------------


#: The recorded JSON answers of jobs (22.05 has no scontrol-jobs.json: scontrol --json is 23.02+).
JOB_ANSWERS = sorted(f"{p.parent.name}/{p.name}"
                     for name in ("squeue.json", "rest-jobs.json", "scontrol-jobs.json")
                     for p in DATA.glob(f"slurm-*/{name}"))


@pytest.mark.parametrize("answer", JOB_ANSWERS)
def test_the_json_answers_say_whether_slurm_may_requeue_a_job(answer: str) -> None:
    assert len(JOB_ANSWERS) == 5  # squeue and rest of both releases, scontrol of 25.11
    data = json.loads((DATA / answer).read_text())
    assert {j.requeue for j in decode.jobs_answer(data, answer)} == {True}  # recorded with JobRequeue=1
    for j in data["jobs"]:
        j["requeue"] = False  # as --no-requeue answers
    assert {j.requeue for j in decode.jobs_answer(data, answer)} == {False}
    del data["jobs"][0]["requeue"]
    assert decode.jobs_answer(data, answer)[0].requeue is True  # not said: Slurm's default
    data["jobs"][0]["requeue"] = 0
    with pytest.raises(SlurmError, match="requeue"):
        decode.jobs_answer(data, answer)


@pytest.mark.parametrize("version", ["slurm-22.05", "slurm-25.11"])
def test_scontrol_text_and_pyslurm_say_whether_slurm_may_requeue_a_job(version: str) -> None:
    line = (DATA / version / "scontrol-jobs-d-o.txt").read_text().splitlines()[0]
    assert " Requeue=1 " in line and job_from_scontrol(line).requeue is True
    assert job_from_scontrol(line.replace(" Requeue=1 ", " Requeue=0 ")).requeue is False
    from types import SimpleNamespace

    fields = dict(id=13, state="PENDING", allocated_nodes=None, gres_per_node={"gpu": 8}, eligible_time=None,
                  start_time=None, time_limit=None, name="g", state_reason="None", comment="fabric",
                  user_name="u", partition="debug", account="a", qos="normal", num_nodes=2,
                  required_nodes=None, excluded_nodes=None, submit_time=1, priority=1, dependencies=None,
                  cpus=10, reservation=None,
                  array_id=None, heterogeneous_id=None)
    assert job_from_pyslurm(SimpleNamespace(**fields, is_requeueable=False)).requeue is False
    assert job_from_pyslurm(SimpleNamespace(**fields, is_requeueable=True)).requeue is True
    assert job_from_pyslurm(SimpleNamespace(**fields)).requeue is True  # not said: Slurm's default


# -- a victim Slurm will not requeue -----------------------------------------------------------------


def test_a_spot_gang_slurm_will_not_requeue_is_never_a_victim(tmp_path: Path) -> None:
    spots = [spot(10 + k, HOSTS[4 * k:4 * k + 4], requeue=False) for k in range(4)]
    client = Fake([*spots, high(20)])
    a = agent(tmp_path, client, preempt_benefit_ratio=1, fallback_s=8, compact_wait_s=0)
    for _ in range(5):
        res = a.cycle()
        assert res.requeued == [] and res.started == []
    assert not [c for c in client.calls if c[0] == "requeue" or c[2].get("ReqNodeList")]
    # one of them requeueable: that one is the victim
    client._jobs = [replace(spots[0], requeue=True), *spots[1:], high(20)]
    assert a.cycle().requeued == [10]


def test_a_victim_whose_requeue_slurm_refuses_is_given_up_and_its_job_not_pinned(tmp_path: Path) -> None:
    """Slurm said nothing of the requeue flag (or it changed meanwhile) and refused the requeue: the high
    gang was pinned onto the victim's busy hosts and the victim chosen again every cycle."""

    class Refusing(Fake):
        def requeue(self, job_id: int) -> None:
            super().requeue(job_id)
            raise SlurmError(f"`scontrol requeue {job_id}` exited 1: Requested operation is presently "
                             f"disabled for job {job_id}")

    client = Refusing([*[spot(10 + k, HOSTS[4 * k:4 * k + 4]) for k in range(4)], high(20)])
    a = agent(tmp_path, client, preempt_benefit_ratio=1, fallback_s=8, compact_wait_s=0)
    for _ in range(4 * MAX_PIN_FAILURES + 2):
        a.cycle()
    requeues = [j for what, j, _ in client.calls if what == "requeue"]
    assert len(requeues) == 4 * MAX_PIN_FAILURES  # each spot gang tried MAX_PIN_FAILURES times, then never
    assert not [c for c in client.calls if c[2].get("ReqNodeList")]  # the high gang never pinned there
    log = events(tmp_path)
    abandoned = [e["job"] for e in log if e["event"] == "agent.requeue_abandoned"]
    assert sorted(abandoned) == [10, 11, 12, 13]
    assert a.actions.unrequeueable == {10, 11, 12, 13}
    client._jobs = [j for j in client._jobs if j.job_id != 10]  # one ended: its memory goes
    a.cycle()
    assert a.actions.unrequeueable == {11, 12, 13}


# -- deferrals Slurm refuses yet applies -------------------------------------------------------------


class Inactive(Fake):
    """A job in an INACTIVE partition as Slurm 25.11 (and 22.05) treats it: every update answers rc 1
    ("Requested partition configuration not available now") but its StartTime is set all the same."""

    def update(self, job_id: int, **fields: str) -> None:
        self.calls.append(("update", job_id, fields))
        start = fields.get("StartTime", "")
        if start.startswith("now"):
            until = time.time() + int(start[4:] or 0)
            self._jobs = [replace(j, begin_time=until) if j.job_id == job_id else j for j in self._jobs]
        raise SlurmError(f"Requested partition configuration not available now for job {job_id}")


def test_a_refused_deferral_of_a_users_begin_is_not_pushed_later_every_cycle(tmp_path: Path) -> None:
    now = time.time()
    job = Job(job_id=5, name="b", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8,
              submit_time=now, begin_time=now + 20)
    client = Inactive([job])
    a = agent(tmp_path, client, fallback_s=8)
    for k in range(12):
        a.cycle(now=time.time())
        begin = client._jobs[0].begin_time
        assert begin <= now + 20 + 8 + 2, (k, begin - now, client.calls)
    defers = [f["StartTime"] for _, j, f in client.calls if j == 5]
    assert 1 <= len(defers) <= MAX_DEFER_FAILURES, defers  # retried after a backoff, not every cycle
    assert a.actions.waits == {5: now + 20}


def test_a_refused_renewal_is_retried_after_a_backoff_and_given_up_after_a_few(tmp_path: Path) -> None:
    busy = Job(job_id=1, name="big", state="RUNNING", nodes=16, gpus_per_node=8, node_list=HOSTS,
               gpus={h: tuple(range(8)) for h in HOSTS})
    now = time.time()
    waiting = Job(job_id=2, name="w", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8,
                  submit_time=now - 7, begin_time=now + 1)  # the plugin's deferral, about to end
    client = Inactive([busy, waiting])
    a = agent(tmp_path, client, fallback_s=8)
    a.cycle()
    assert [f for _, j, f in client.calls] == [{"StartTime": "now+8"}]
    for _ in range(6):  # 4 s later the begin time is still the agent's own (refused, yet set): no take-over
        a.cycle(now=time.time() + 4)
    assert len(client.calls) == 1, client.calls
    assert a.actions.waits == {}
    from fabric_hpc.slurm import actions as mod

    for k in range(1, MAX_DEFER_FAILURES + 2):  # each retry once its backoff is over, then no more
        a.actions.defer_retry = {j: (n, 0.0) for j, (n, _) in a.actions.defer_retry.items()}
        client._jobs = [busy, replace(waiting, begin_time=time.time() + 1)]
        a.cycle()
        assert len(client.calls) == min(k + 1, MAX_DEFER_FAILURES), (k, client.calls)
    assert mod.MAX_DEFER_FAILURES == MAX_DEFER_FAILURES
    [gave_up] = [e for e in events(tmp_path) if e["event"] == "agent.defer_abandoned"]
    assert gave_up["job"] == 2 and gave_up["count"] == MAX_DEFER_FAILURES

