"""release_pins keeps to its one budget (docs/slurm.md: 15 s in all): the time the contact probe took is
not given again to the release that follows it."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.slurm.test_agent_actions import Fake, agent, gang

PROBE_S = 0.5


class SlowProbe(Fake):
    """A backend with a contact probe that answers after PROBE_S, and a request timeout (as cli/rest)."""

    def __init__(self) -> None:
        super().__init__([gang(1)])
        self.timeout = 300.0
        self.timeout_seen: list[float] = []

    def contact_probe(self) -> list[str]:
        return [sys.executable, "-c", f"import time; time.sleep({PROBE_S})"]

    def jobs(self):
        self.timeout_seen.append(self.timeout)
        return super().jobs()


def test_the_release_gets_only_what_the_probe_left_of_the_budget(tmp_path: Path) -> None:
    client = SlowProbe()
    budget = 6.0
    agent(tmp_path, client).release_pins(budget_s=budget)
    assert len(client.timeout_seen) == 1
    assert client.timeout_seen[0] <= budget - PROBE_S  # the whole budget again would be 6 s
    assert client.timeout == 300.0  # restored after the stop's calls
