"""A gang in an active reservation whose nodes span two leaves (n3-n6: two hosts of leaf 1, two of leaf 2)
starts at once, not after the compact wait (900 s) for one leaf the reservation can never give: the agent
places it on the reservation's nodes (23.02+: Slurm names each node's reservation) or hands it to Slurm
(22.05: only the RESERVED flag). Unit: tests/slurm/test_reservation_compact_hold.py."""

from __future__ import annotations

import time

import pytest

from fabric_hpc.hostlist import expand
from tests.slurm_integration.test_agent_held_live import _decisions, _until

pytestmark = [pytest.mark.slurm]
RESERVED = {"n3", "n4", "n5", "n6"}


def test_a_reservation_across_two_leaves_is_not_held_for_one(fabric_cluster, agent):
    c = fabric_cluster
    c.run(["scontrol", "create", "reservation", "ReservationName=split", "StartTime=now", "Duration=30",
           "Nodes=n[3-6]", "Users=root", "Flags=IGNORE_JOBS"])
    try:
        _until(lambda: "RESERVED" in c.run(["scontrol", "show", "node", "n3"]).stdout, "n3 not RESERVED",
               None, timeout=15)
        agent.start()
        jid = c.sbatch("-N4", "--gres=gpu:8", "--comment=fabric", "--reservation=split", wrap="sleep 300")
        info = c.wait_job(jid, states=("RUNNING",), timeout=60)  # the compact wait would be 900 s
        assert set(expand(info["NodeList"])) == RESERVED, info
        placed, handed = _decisions(agent, "agent.place", jid), _decisions(agent, "agent.handoff", jid)
        if c.version >= (23, 2, 0):
            assert placed and set(placed[0]["hosts"]) == RESERVED and not handed, (placed, handed)
    finally:
        c.run(["scancel", "--user", "root"], check=False)
        deadline = time.monotonic() + 30
        while c.run(["scontrol", "delete", "ReservationName=split"], check=False).returncode != 0:
            assert time.monotonic() < deadline, "reservation split could not be deleted"
            time.sleep(0.3)
