"""Slurm reservations on a live cluster (the unit tests: tests/slurm/test_reservations.py). With n1-n12 in an
active reservation, a gang that names no reservation is placed on n13-n16 only, and one that names the
reservation runs inside it: placed by the agent where Slurm names each node's reservation (23.02+:
``scontrol show nodes --json``), handed to Slurm where it gives only the ``RESERVED`` flag (22.05's
``sinfo --json``). Before, the agent pinned the first gang onto reserved nodes, where Slurm never started
it."""

from __future__ import annotations

import contextlib
import time

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]
RESERVED = {f"n{i}" for i in range(1, 13)}


@contextlib.contextmanager
def _reservation(c, name: str):
    c.run(["scontrol", "create", "reservation", f"ReservationName={name}", "StartTime=now", "Duration=30",
           "Nodes=n[1-12]", "Users=root", "Flags=IGNORE_JOBS"])
    try:
        _until(lambda: "RESERVED" in c.run(["scontrol", "show", "node", "n1"]).stdout, "n1 not RESERVED",
               None, timeout=15)
        yield
    finally:  # Slurm deletes no reservation with jobs in it: cancel them first (the cluster is shared)
        c.run(["scancel", "--user", "root"], check=False)
        deadline = time.monotonic() + 30
        while c.run(["scontrol", "delete", f"ReservationName={name}"], check=False).returncode != 0:
            assert time.monotonic() < deadline, f"reservation {name} could not be deleted"
            time.sleep(0.3)


def test_reserved_nodes_go_to_their_reservation_only(fabric_cluster, agent):
    c = fabric_cluster
    with _reservation(c, "fabresv"):
        agent.start()
        plain = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300")
        inside = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", "--reservation=fabresv",
                          wrap="sleep 300")
        info = c.wait_job(plain, states=("RUNNING",), timeout=30)
        assert not set(expand(info["NodeList"])) & RESERVED, info
        [place] = _decisions(agent, "agent.place", plain)
        assert not set(place["hosts"]) & RESERVED, place
        info = c.wait_job(inside, states=("RUNNING",), timeout=40)
        assert set(expand(info["NodeList"])) <= RESERVED, info
        placed, handed = _decisions(agent, "agent.place", inside), _decisions(agent, "agent.handoff", inside)
        if c.version >= (23, 2, 0):
            assert placed and set(placed[0]["hosts"]) <= RESERVED and not handed, (placed, handed)
        else:
            assert handed and "runs in reservation 'fabresv'" in handed[0]["reason"], (placed, handed)
