"""Messages an admin probe found unclear: a numa_local gang larger than a NUMA node was told
"only 0 are free" with 128 free hosts, and a request's own fix (valid tp values) was followed by an
unrelated generic example."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import open_fabric


def test_numa_local_names_the_numa_node_size():
    fab = open_fabric("dgx-h100-superpod-4su")  # 4 GPUs per NUMA node
    with pytest.raises(PlacementInfeasible) as exc:
        place(fab, ClusterState(fab), "nodes=2,gpus=8,numa_local", solver="greedy")
    assert "hosts with 8 free GPUs on one NUMA node" in exc.value.message
    assert "a NUMA node here has at most 4 GPUs" in exc.value.message


def test_a_request_error_points_at_its_own_values():
    with pytest.raises(ConfigError) as exc:
        parse_request("gpus=80,tp=72")
    assert "use tp = " in exc.value.message and "values that work" in exc.value.hint


def test_cpsat_breaks_ties_as_the_other_solvers():
    """On an empty fabric every leaf is equal: cpsat took the last one (su04), greedy and the Slurm
    baselines the first (su01), with the same cost and nothing saying why they differ."""
    fab = open_fabric("superpod:sus=4")
    hosts = {s: place(fab, ClusterState(fab), "nodes=4,gpus=8,within=leaf", solver=s).hosts
             for s in ("cpsat", "greedy", "slurm-tree")}
    assert hosts["cpsat"] == hosts["greedy"] == hosts["slurm-tree"]
    placed = place(fab, ClusterState(fab), "nodes=4,gpus=8,within=leaf", solver="cpsat")
    assert placed.optimal is True and placed.solver == "cpsat"


def test_greedy_spreads_gpus_only_for_more_channels():
    """One-NIC hosts: 8+4 and 6+6 give the same one-channel ring, and 6+6 strands more GPUs; greedy
    spread them anyway (rest 6.8 against slurm-tree's 6.6). DGX hosts (8 NICs): 8+4 still becomes 6+6."""
    import numpy as np

    from fabric_hpc.topology import build, generators

    for fab, balanced in ((open_fabric("leaf-spine-16"), False),
                          (build(generators.superpod(sus=1, hosts_per_su=4)), True)):
        state = ClusterState(fab)
        h = fab.hosts
        state.allocate("busy", fab.host_gpus(h[1])[:2] + fab.host_gpus(h[2]) + fab.host_gpus(h[3]))
        placed = place(fab, state, "gpus=12", solver="greedy")
        counts = sorted(np.unique([fab.gpu(fab.gpu_pos[g]).host for g in placed.gpus], return_counts=True)[1])
        assert counts == ([6, 6] if balanced else [4, 8]), (fab.name, counts)
        tree = place(fab, state, "gpus=12", solver="slurm-tree")
        assert placed.breakdown["comm_ms"] <= tree.breakdown["comm_ms"] + 1e-9


def test_infeasible_names_the_largest_jobs_and_reads_well():
    fab = open_fabric("leaf-spine-16")
    state = ClusterState(fab)
    state.allocate("big", fab.host_gpus("n1") + fab.host_gpus("n2"))
    state.allocate("small", fab.host_gpus("n3")[:1])
    with pytest.raises(PlacementInfeasible) as exc:
        place(fab, state, "nodes=16,gpus=8", solver="greedy")
    assert "would have to end (the largest there: big, small)" in exc.value.message
    with pytest.raises(PlacementInfeasible) as exc:
        place(open_fabric("superpod:sus=4"), ClusterState(open_fabric("superpod:sus=4")),
              "gpus=800,max_domains=3,max_domains_level=leaf", solver="greedy")
    assert "in at most 3 leaf groups;" in exc.value.message
