"""within=nvlink never uses PCIe-only GPUs (they are in no NVLink domain); tp=N still works there."""

from __future__ import annotations

import pytest
import yaml

from fabric_hpc.cli.main import main
from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build
from tests.topology.test_pcie_nvlink_domains import MIXED


def _h100_busy(fab) -> ClusterState:
    state = ClusterState(fab)
    state.allocate("big", [g for h in ("h1", "h2", "h3") for g in fab.host_gpus(h)])
    return state


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree"])
def test_within_nvlink_refuses_pcie_only_gpus(solver):
    fab = build(MIXED)
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, _h100_busy(fab), "gpus=4,within=nvlink", solver=solver)
    assert "12 free GPU(s) are PCIe-only, in no NVLink domain" in str(e.value)
    assert "big" in str(e.value)
    placed = place(fab, ClusterState(fab), "gpus=4,within=nvlink", solver=solver)
    assert set(placed.hosts) <= {"h1", "h2", "h3"}


def test_within_nvlink_on_a_pcie_only_fabric_never_fits():
    fab = build({**MIXED, "hosts": [{"names": "l[1-2]", "type": "l4"}], "network": None})
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, ClusterState(fab), "gpus=2,within=nvlink")
    assert e.value.explanation["never"] and "it has no NVLink domain" in str(e.value)
    assert "drop within=nvlink" in e.value.hint


def test_tp_on_pcie_only_hosts_stays_in_one_host_with_a_note():
    fab = build(MIXED)
    p = place(fab, _h100_busy(fab), "gpus=4,tp=4")
    assert len(p.hosts) == 1 and p.hosts[0].startswith("l")
    assert any("PCIe-only" in n and "stay inside one host" in n for n in p.notes)
    p8 = place(fab, _h100_busy(fab), "gpus=8,tp=4")
    assert all(len(s) == 1 for s in p8.slices)


def test_cli_within_nvlink_exits_4(tmp_path, capsys):
    topo, state = tmp_path / "mixed.yaml", tmp_path / "s.json"
    topo.write_text(yaml.safe_dump(MIXED))
    state.write_text('{"version": 1, "jobs": {"big": {"hosts": "h[1-3]"}}}')
    assert main(["place", "-t", str(topo), "-s", str(state), "-r", "gpus=4,within=nvlink"]) == 4
    assert "PCIe-only" in capsys.readouterr().err
