"""A job without a time limit is never backfilled in front of a reserved high gang, live (4 hosts): B holds
3 hosts with ``-t 120`` (it ends early: sleep 20), H (-N4, tier high) needs all of them, S (-N1, no
``--time``: the partition's ``MaxTime=INFINITE``, Slurm's ``UNLIMITED``) arrives. H's reservation starts at
B's limit, two hours ahead; the agent counted S as 1 h and pinned it at once on the free host (Slurm's
backfill does not start an INFINITE job there). Now S waits, H starts when B ends, then S.
The rules on the agent's own path: tests/slurm/test_unlimited_walltime_view.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.slurm_integration.conftest import AgentProcess, agent_on
from tests.slurm_integration.test_backfill_reservation_live import (  # noqa: F401 (the fixture)
    reserved_high_gang_goes_first, small)

pytestmark = [pytest.mark.slurm]


@pytest.fixture()
def agent(small: Any) -> Iterator[AgentProcess]:  # noqa: F811
    with agent_on(small, small.topology_file) as a:
        yield a


@pytest.mark.parametrize("limit", [(), ("-t", "0")], ids=["no-time", "time-0"])
def test_an_unlimited_job_waits_behind_the_reserved_high_gang(small, agent, limit) -> None:  # noqa: F811
    agent.start()
    reserved_high_gang_goes_first(small, agent, ("-t", "120", "--comment=nofabric"), limit, unlimited=True)