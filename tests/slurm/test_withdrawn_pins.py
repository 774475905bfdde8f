"""A pinned spot gang Slurm has not started yet held its hosts against a high gang, which then preempted a
running spot gang instead (the pin's GPUs were committed before the policy ran, and a pinned, unstarted
job is neither pending nor running to it). Its pin costs nothing to withdraw, so while a job of a tier that
may preempt it waits, a pinned, unstarted job is pending to the policy again: the high gang takes its hosts,
nothing is requeued, and the spot gang's pin is cleared (``agent.unpin``) or, placed on the same hosts
again, left as it is.

4 hosts: R (spot, running on n1, n2 for 10 min), S (spot, pinned to n3, n4, not started), H (high, 2 nodes)
arrives."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.view import PinRules, build_view
from fabric_hpc.topology import build, generators
from tests.slurm.test_agent_actions import Fake, pinned_by

FAB = build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=8, cpus=8))
NOW = 50_000.0


def jobs(h_comment: str = "fabric:tier=high", s_comment: str = "fabric:tier=spot") -> list[Job]:
    r = Job(job_id=1, name="R", state="RUNNING", comment="fabric:tier=spot", nodes=2, gpus_per_node=8, cpus=2,
            submit_time=NOW - 700, begin_time=NOW - 600, start_time=NOW - 600, time_limit_min=60,
            node_list=("n1", "n2"), gpus={"n1": tuple(range(8)), "n2": tuple(range(8))})
    s = Job(job_id=2, name="S", state="PENDING", comment=s_comment, nodes=2, gpus_per_node=8, cpus=2,
            submit_time=NOW - 30, begin_time=NOW - 5, time_limit_min=60, req_nodes=("n3", "n4"))
    h = Job(job_id=3, name="H", state="PENDING", comment=h_comment, nodes=2, gpus_per_node=8, cpus=2,
            submit_time=NOW - 1, begin_time=NOW + 20, time_limit_min=30)
    return [r, s, h]


def _cycle(tmp_path: Path, js: list[Job]):
    client = Fake(js, hosts=4)
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preempt_benefit_ratio=1.0))
    return client, pinned_by(agent, js).cycle(NOW)


def test_the_high_gang_takes_the_unstarted_spot_pin_instead_of_a_requeue(tmp_path: Path) -> None:
    client, res = _cycle(tmp_path, jobs())
    assert res.requeued == []  # before: R requeued for H
    assert [(s["job"], sorted(s["hosts"])) for s in res.started] == [(3, ["n3", "n4"])]
    assert res.unpinned == {2: "withdrawn"} and res.waiting[2] in ("Resources", "Priority")
    assert ("update", 2, {"ReqNodeList": "", "StartTime": "now+20"}) in client.calls
    unpins = [e for e in read_json_lines(tmp_path / "decisions.jsonl") if e["event"] == "agent.unpin"]
    assert [(e["job"], e["reason"]) for e in unpins] == [(2, "withdrawn")]


def test_the_view_lists_the_pin_as_pending_only_while_a_higher_tier_waits() -> None:
    pins = PinRules(60, fallback_s=20)
    view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(), now=NOW, pins=pins)
    assert view.withdrawn == {2: ("n3", "n4")} and 2 in view.candidates and 2 not in view.pinned
    for h in ("fabric:tier=spot", "fabric:tier=normal"):  # normal may preempt spot too
        view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(h_comment=h), now=NOW, pins=pins)
        assert (view.withdrawn == {}) == (h == "fabric:tier=spot"), h
    view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(s_comment="fabric:tier=normal"), now=NOW,
                      pins=pins)
    assert view.withdrawn == {} and view.pinned == {2: ("n3", "n4")}  # a normal pin is not preempted


def test_a_withdrawn_pin_placed_on_the_same_hosts_again_is_left_as_it_is(tmp_path: Path) -> None:
    """R gone: H and S both fit now; S's pin to n3, n4 is kept (no second pin, no unpin)."""
    js = jobs()[1:]
    client, res = _cycle(tmp_path, js)
    assert [s["job"] for s in res.started] == [3] and res.unpinned == {} and res.requeued == []
    assert not [c for c in client.calls if c[1] == 2]
