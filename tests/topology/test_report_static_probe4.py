"""The static report picture from the fourth admin probe: a multi-line description or title stays
in the header band (one line, cut with an ellipsis), and glyphs missing from the font (CJK,
emoji job ids) print no Python warning."""

from __future__ import annotations

import warnings

import pytest

from fabric_hpc.topology import open_fabric
from fabric_hpc.topology.report import write_report
from tests.topology.test_report_text import _figure

ML = """\
fabric: 1
name: ml
description: |
  Lab cluster B.
  Owner: hpc-team
  Rack rows 3-4
  Notes: rebuilt 2026
host_types:
  node: {gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 4,
         memory_gb: 16, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 2, nic_gbps: 50}
hosts:
- {names: 'n[1-4]', type: node}
network:
  levels: [leaf, spine]
  groups:
  - {name: leafA, level: leaf, switches: 2, hosts: 'n[1-2]', uplink_gbps: 200}
  - {name: leafB, level: leaf, switches: 2, hosts: 'n[3-4]', uplink_gbps: 200}
  - {name: sp, level: spine, switches: 1, children: [leafA, leafB]}
"""


def _header_fits(fig) -> None:
    """Every header text is one line, inside the figure, above the chart."""
    renderer = fig.canvas.get_renderer()
    top = max(ax.get_window_extent(renderer).y1 for ax in fig.axes)
    for t in fig.texts:
        box = t.get_window_extent(renderer)
        print(repr(t.get_text()[:60]), box.y0, top, box.x1, fig.bbox.x1)
        assert "\n" not in t.get_text() and "\r" not in t.get_text()
        assert box.y0 > top, t.get_text()
        assert box.x1 <= fig.bbox.x1 + 1, t.get_text()


@pytest.mark.parametrize("title", ["t", "line1\nline2\nline3\nline4", "word " * 60])
def test_a_multi_line_description_or_title_stays_above_the_chart(tmp_path, title):
    (tmp_path / "ml.yaml").write_text(ML)
    fab = open_fabric(str(tmp_path / "ml.yaml"))
    assert "\n" in fab.spec.description
    _header_fits(_figure(fab, {"n1": "job-1"}, title=title))


def test_a_long_one_line_description_is_cut_inside_the_figure(tmp_path):
    (tmp_path / "ml.yaml").write_text(ML.replace("description: |\n  Lab cluster B.\n", "description: |\n  " +
                                                 "W" * 300 + "\n"))
    fab = open_fabric(str(tmp_path / "ml.yaml"))
    _header_fits(_figure(fab, {"n1": "j" * 200}, title="T" * 300))


def test_missing_glyphs_print_no_warning_and_leave_the_filters_alone(tmp_path):
    fab = open_fabric("leaf-spine:hosts=2")
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        write_report(fab, tmp_path / "r.html", occupancy={"n1": "日本語ジョブ✓🚀", "n2/gpu0": "\U0001F9EA-job"},
                     title="报告 🚀", png=tmp_path / "r.png", svg=tmp_path / "r.svg")
        inner = list(warnings.filters)
    glyphs = [str(w.message) for w in seen if "missing from font" in str(w.message)]
    assert glyphs == []
    assert (tmp_path / "r.png").stat().st_size > 0
    assert inner[0] == ("always", None, Warning, None, 0)  # our own filter is still first: nothing global
    assert list(warnings.filters) == before
