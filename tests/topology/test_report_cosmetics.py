"""Report cosmetics: whole-GPU axis ticks on mixed host sizes; singular counts in the details panel."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.topology import build
from tests.topology.test_pcie_nvlink_domains import MIXED
from tests.topology.test_report_text import _figure


def test_mixed_host_sizes_get_whole_gpu_ticks():
    fab = build(MIXED)
    fig = _figure(fab, {"l1": "a"})
    heat = next(ax for ax in fig.axes if "one column per GPU" in ax.get_xlabel())
    ticks = heat.get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks), ticks


def test_details_panel_counts_sockets_and_cores_with_plurals():
    js = (Path(__file__).parents[2] / "fabric_hpc/topology/report_assets/report.js").read_text()
    assert 'pl(t.sockets, "socket")' in js and '" sockets × "' not in js
