"""CP-SAT on a leaf whose uplinks are slower than one NIC: the collective's bandwidth variable had an
upper bound covering only the NVLink and one-NIC ring times, so the uplink term (a ring leaving a
leaf through its uplinks) above that bound made the empty fabric "proven infeasible" (exit 4) while
greedy and the Slurm plug-ins placed the job."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.topology import build, generators

OPTIONS = SolveOptions(time_limit_s=5.0, workers=1)


def _slow_uplinks(nics: int, uplink_gbps: float):
    """leaf-spine: 16 hosts × 8 GPUs, 4 per leaf, ``nics`` NICs of 50 Gb/s, leaf uplinks as given."""
    spec = generators.leaf_spine(hosts=16, hosts_per_leaf=4, gpus=8)
    data = spec.model_dump()
    for ht in data["host_types"].values():
        ht.update(nics=nics, nic_gbps=50.0)
    for gr in data["network"]["groups"]:
        if gr["level"] == "leaf":
            gr["uplink_gbps"] = uplink_gbps
    return build(type(spec).model_validate(data))


@pytest.mark.parametrize(("nics", "uplink", "text"), [(8, 45.0, "gpus=40"), (1, 25.0, "gpus=40"),
                                                      (8, 45.0, "nodes=6,gpus=8")])
def test_cpsat_places_where_the_uplinks_are_slower_than_one_nic(nics, uplink, text):
    fab = _slow_uplinks(nics, uplink)
    state = ClusterState(fab)
    placed = place(fab, state, text, solver="cpsat", options=OPTIONS)
    greedy = place(fab, state, text, solver="greedy", options=OPTIONS)
    assert len(placed.gpus) == 48 if text.startswith("nodes") else len(placed.gpus) == 40
    assert placed.cost <= greedy.cost + 1e-9
    # the bound stays a lower bound of the exact collective time
    assert placed.stats["comm_us_bound"] <= round(placed.breakdown["comm_ms"] * 1000)
