"""An unstarted spot pin is withdrawn (pending to the policy again) only while a job of a tier that may
preempt spot *under the agent's policy* waits. ``fabric_policy`` (the agent's default) lets only ``high``
preempt ``spot`` (``preempting_tiers=("high",)``); the view used ``DEFAULT_TIERS`` (``high`` and
``normal``), so a waiting normal gang took the spot gang's pinned hosts: a preemption the policy does not
allow. Same 4 hosts as test_withdrawn_pins.py: R (spot, running on n1, n2), S (spot, pinned to n3, n4, not
started), a 2-node gang of the tier under test arrives."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.scheduler import DEFAULT_TIERS, fabric_policy
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.view import PinRules, build_view
from tests.slurm.test_agent_actions import Fake, pinned_by
from tests.slurm.test_withdrawn_pins import FAB, NOW, jobs


def test_a_normal_gang_does_not_take_an_unstarted_spot_pin_under_the_fabric_policy(tmp_path: Path) -> None:
    client = Fake(jobs(h_comment="fabric:tier=normal"), hosts=4)
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preempt_benefit_ratio=1.0))
    res = pinned_by(agent, client.jobs()).cycle(NOW)
    assert res.unpinned == {} and res.requeued == []
    assert 3 not in {s["job"] for s in res.started}       # the spot pin holds n3, n4
    assert not [c for c in client.calls if c[:2] == ("update", 2)]


def test_a_high_gang_still_takes_it(tmp_path: Path) -> None:
    client = Fake(jobs(), hosts=4)
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preempt_benefit_ratio=1.0))
    res = pinned_by(agent, client.jobs()).cycle(NOW)
    assert res.unpinned == {2: "withdrawn"}
    assert [(s["job"], sorted(s["hosts"])) for s in res.started] == [(3, ["n3", "n4"])]


def test_the_view_follows_the_tiers_it_is_given() -> None:
    policy_tiers = fabric_policy().tiers
    for tiers, normal_takes in ((policy_tiers, False), (DEFAULT_TIERS, True)):
        pins = PinRules(60, fallback_s=20, tiers=tiers)
        view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(h_comment="fabric:tier=normal"), now=NOW,
                          pins=pins)
        assert (view.withdrawn == {2: ("n3", "n4")}) == normal_takes
        view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(), now=NOW, pins=pins)
        assert view.withdrawn == {2: ("n3", "n4")}


def test_no_gang_takes_an_unstarted_spot_pin_under_the_slurm_policy(tmp_path: Path) -> None:
    """Review: the slurm policy never preempts, but the pin rules took ``AgentConfig.preemption``
    (default on) and the default tiers: a waiting high (or normal) gang still withdrew the spot pin."""
    for tier in ("high", "normal"):
        client = Fake(jobs(h_comment=f"fabric:tier={tier}"), hosts=4)
        agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path / tier), fallback_s=20, policy="slurm"))
        res = pinned_by(agent, client.jobs()).cycle(NOW)
        assert res.unpinned == {} and res.requeued == [], tier
        assert not [c for c in client.calls if c[:2] == ("update", 2)], tier
