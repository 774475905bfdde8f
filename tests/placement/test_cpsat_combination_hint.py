"""When CP-SAT proves that a request's constraints cannot hold together, its hint named a fixed list
("relax within, max_domains, slices or rail_aligned") whatever the request set: ``gpus=12,tp=3,
exclusive`` on 4-GPU PCIe hosts (three whole hosts of 4 cannot hold groups of 3 that each stay in one
host) was told to relax four constraints it does not use. The hint now names those it sets."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from tests.placement.test_cpsat_tp_host_groups import pcie_hosts


def test_the_hint_names_the_constraints_the_request_sets():
    fab = pcie_hosts()
    with pytest.raises(PlacementInfeasible) as err:
        place(fab, ClusterState(fab), "gpus=12,tp=3,exclusive", solver="cpsat")
    assert err.value.explanation["constraint"] == "combination"
    hint = err.value.hint or ""
    assert "whole_hosts" in hint and "tp" in hint, hint
    assert "rail_aligned" not in hint and "within" not in hint, hint
