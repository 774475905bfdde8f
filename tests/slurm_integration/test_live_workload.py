"""50 jobs through sbatch, as a user would: the agent's placements are exact, exclusive and compact."""

from __future__ import annotations

import pytest

from fabric_hpc.events import read_json_lines
from tests.slurm_integration.workload import mean_leaves, mixed_sequence, run_sequences

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_fifty_jobs_fabric_vs_slurm_alone(slurm_cluster, fabric_cluster, agent, slurm_fabric):
    seq = mixed_sequence(50)
    # Slurm alone (its topology/tree plugin, the same topology.conf) and fabric: the same sequence,
    # side by side on two clusters of the same fabric (submitted job by job in turn, watched together)
    agent.extra = ("--compact-wait", "30")
    agent.start()
    alone, fab = run_sequences([(slurm_cluster, seq), (fabric_cluster, seq)])

    for obs in (alone, fab):
        assert obs.double_booked == []
        for jid in obs.job_ids:
            cluster = slurm_cluster if obs is alone else fabric_cluster
            assert cluster.job(jid)["JobState"] == "COMPLETED", cluster.job(jid)
    # every fabric-marked job ran exactly on the hosts of the agent's last decision for it
    chosen = {}
    for e in read_json_lines(agent.state_dir / "decisions.jsonl"):
        if e["event"] == "agent.place":
            chosen[e["job"]] = tuple(sorted(e["hosts"]))
    gangs = [j for j, s in zip(fab.job_ids, seq, strict=True) if s.gang]
    assert set(gangs) <= set(chosen), agent.log()
    for jid in gangs:
        assert tuple(sorted(fab.nodes[jid])) == chosen[jid], jid
        assert fabric_cluster.job(jid)["Restarts"] == "0"
    mean_alone, multi_alone = mean_leaves(slurm_fabric, seq, alone)
    mean_fab, multi_fab = mean_leaves(slurm_fabric, seq, fab)
    print(f"\nleaves per multi-node job: slurm alone {mean_alone:.3f} ({multi_alone} spanning >1 leaf, "
          f"{alone.seconds:.1f} s); fabric {mean_fab:.3f} ({multi_fab} spanning >1 leaf, {fab.seconds:.1f} s)")
    assert mean_fab <= mean_alone
    assert multi_fab <= multi_alone
