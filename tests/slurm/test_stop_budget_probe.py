"""At stop, a backend whose calls hold the GIL (pyslurm: a thread cannot leave them behind) is asked
through its ``contact_probe`` command first, within a third of the stop budget: a frozen slurmctld is
left without a read that would outlast the unit's TimeoutStopSec."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.slurm.test_agent_actions import Fake, agent, gang


class Probed(Fake):
    def __init__(self, probe: list[str]) -> None:
        super().__init__([gang(1)])
        self.probe, self.read = probe, 0

    def contact_probe(self) -> list[str]:
        return self.probe

    def jobs(self):
        self.read += 1
        return super().jobs()


def test_a_probe_that_does_not_answer_skips_the_release(tmp_path: Path) -> None:
    client = Probed([sys.executable, "-c", "import time; time.sleep(60)"])  # a frozen slurmctld
    assert agent(tmp_path, client).release_pins(budget_s=1.5) == [] and client.read == 0


def test_a_probe_that_answers_lets_the_release_read(tmp_path: Path) -> None:
    client = Probed([sys.executable, "-c", "pass"])
    assert agent(tmp_path, client).release_pins(budget_s=15) == [] and client.read == 1
