"""``--no-preemption`` (agent config ``preemption = false``) turns pin withdrawal off too (docs/slurm.md):
the unstarted spot gang keeps its pin and hosts while a high gang waits, and nothing is requeued.
The scene of tests/slurm/test_withdrawn_pins.py."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.view import PinRules, build_view
from tests.slurm.test_agent_actions import Fake, pinned_by
from tests.slurm.test_withdrawn_pins import FAB, NOW, jobs


def test_the_view_withdraws_no_pin_without_preemption() -> None:
    view = build_view(FAB, Fake([], hosts=4).nodes(), jobs(), now=NOW,
                      pins=PinRules(60, fallback_s=20, preemption=False))
    assert view.withdrawn == {} and view.pinned == {2: ("n3", "n4")}


def test_the_agent_without_preemption_keeps_the_pin(tmp_path: Path) -> None:
    client = Fake(jobs(), hosts=4)
    agent = Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), fallback_s=20, preemption=False))
    res = pinned_by(agent, client.jobs()).cycle(NOW)
    assert res.unpinned == {} and res.requeued == [] and res.started == []
    assert not [c for c in client.calls if c[1] == 2]  # S's pin left as it is
