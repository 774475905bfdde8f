"""An SRE's probe of the agent's counters (a real Slurm 25.11 with ``scontrol`` refusing ``update
ReqNodeList`` or ``requeue``): ``fabric_agent_jobs_placed_total``, ``fabric_agent_jobs_requeued_total`` and
``fabric_agent_placement_cost`` counted every decision, whatever Slurm answered (a refused pin once per retry,
a pin skipped because its victim's requeue was refused, the refused requeue itself). They follow what Slurm
accepted now (docs/metrics.md: "placed (pinned and released)"). Each test failed before its fix. The audit
log keeps its write-ahead rule: an ``agent.requeue`` decision is on disk before Slurm is asked, and a
refused one has its ``agent.failed`` record after it."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.slurm.actions import MAX_PIN_FAILURES
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.metrics import AgentMetrics
from tests.slurm.test_agent_actions import Fake, agent, events, gang
from tests.slurm.test_agent_faults_probe import HOSTS, high, spot


def value(m: AgentMetrics, name: str) -> float:
    got = m.registry.get_sample_value(name)
    return 0.0 if got is None else got


class Refusing(Fake):
    """Slurm refusing every requeue (``Requested operation is presently disabled``)."""

    def requeue(self, job_id: int) -> None:
        super().requeue(job_id)
        raise SlurmError(f"`scontrol requeue {job_id}` exited 1: Requested operation is presently "
                         f"disabled for job {job_id}")


def test_refused_pins_are_not_counted_as_placed(tmp_path: Path, metrics: AgentMetrics) -> None:
    client = Fake([gang(1)], refuse={1: "Invalid node name specified for job 1"})
    a = agent(tmp_path, client)
    a.metrics = metrics
    for _ in range(MAX_PIN_FAILURES):
        assert [s["job"] for s in a.cycle().started] == [1]  # decided (and recorded) every cycle
    assert len([c for c in client.calls if c[2].get("ReqNodeList")]) == MAX_PIN_FAILURES
    assert value(metrics, "fabric_agent_jobs_placed_total") == 0
    assert value(metrics, "fabric_agent_placement_cost_count") == 0
    assert value(metrics, "fabric_agent_schedule_cycle_seconds_count") == MAX_PIN_FAILURES


def test_accepted_pins_are_counted_once_each(tmp_path: Path, metrics: AgentMetrics) -> None:
    client = Fake([gang(1), gang(2), gang(3)], refuse={2: "Invalid node name specified for job 2"})
    a = agent(tmp_path, client)
    a.metrics = metrics
    res = a.cycle()
    assert sorted(s["job"] for s in res.started) == [1, 2, 3]
    assert sorted(s["job"] for s in res.placed) == [1, 3]
    assert value(metrics, "fabric_agent_jobs_placed_total") == 2
    assert value(metrics, "fabric_agent_placement_cost_count") == 2
    assert value(metrics, "fabric_agent_placement_cost_sum") == sum(s["cost"] for s in res.placed)


def test_a_refused_requeue_and_the_pin_it_blocked_are_not_counted(tmp_path: Path,
                                                                  metrics: AgentMetrics) -> None:
    client = Refusing([*[spot(10 + k, HOSTS[4 * k:4 * k + 4]) for k in range(4)], high(20)])
    a = agent(tmp_path, client, preempt_benefit_ratio=1, fallback_s=8, compact_wait_s=0)
    a.metrics = metrics
    res = a.cycle()
    assert res.requeued and [s["job"] for s in res.started] == [20]  # decided: a victim, the high gang
    assert res.requeues_done == [] and res.placed == []
    assert [c for c in client.calls if c[0] == "requeue"] and not [c for c in client.calls
                                                                    if c[2].get("ReqNodeList")]
    assert value(metrics, "fabric_agent_jobs_requeued_total") == 0
    assert value(metrics, "fabric_agent_jobs_placed_total") == 0
    assert value(metrics, "fabric_agent_placement_cost_count") == 0
    log = events(tmp_path)
    # the decision is written ahead (the audit log's write-ahead rule), its refusal after it
    kinds = [e["event"] for e in log if e["event"] in ("agent.requeue", "agent.failed")]
    assert kinds == ["agent.requeue"] * len(res.requeued) + ["agent.failed"] * len(res.requeued)
    assert [e["action"] for e in log if e["event"] == "agent.failed"] == ["requeue"] * len(res.requeued)


def test_an_accepted_requeue_is_counted_and_recorded(tmp_path: Path, metrics: AgentMetrics) -> None:
    client = Fake([*[spot(10 + k, HOSTS[4 * k:4 * k + 4]) for k in range(4)], high(20)])
    a = agent(tmp_path, client, preempt_benefit_ratio=1, fallback_s=8, compact_wait_s=0)
    a.metrics = metrics
    res = a.cycle()
    assert res.requeued and res.requeues_done == res.requeued
    assert [s["job"] for s in res.placed] == [20]
    assert value(metrics, "fabric_agent_jobs_requeued_total") == len(res.requeued)
    assert value(metrics, "fabric_agent_jobs_placed_total") == 1
    requeues = [e for e in events(tmp_path) if e["event"] == "agent.requeue"]
    assert sorted(e["job"] for e in requeues) == sorted(res.requeued)
    assert {e["for_job"] for e in requeues} == {20} and all("gpu_hours_lost" in e for e in requeues)
