"""The static picture's axes stay readable: the utilisation bars' ``100%`` never runs into the heat
strip's first tick (``100%0``, ``100%1`` before), and a fabric without GPUs has no made-up GPU
columns (its strip had ticks from -0.5 to 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.topology import open_fabric
from fabric_hpc.topology.report import state_codes
from fabric_hpc.topology.report_static import _figure


def _drawn(fab):
    codes, jobs = state_codes(fab, None)
    fig = _figure(fab, codes, jobs, {}, "t")
    fig.canvas.draw()
    bars, heat = fig.axes
    return fig, bars, heat


def _labels(ax):
    return [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("ref", ["superpod:sus=1", "nvl72:racks=8", "leaf-spine:hosts=4,gpus=0"])
def test_the_bars_last_tick_ends_before_the_strips_first(ref):
    fig, bars, heat = _drawn(open_fabric(ref))
    renderer = fig.canvas.get_renderer()
    last = _labels(bars)[-1]
    assert last.get_text() == "100%"
    right = last.get_window_extent(renderer).x1
    for label in _labels(heat):
        assert label.get_window_extent(renderer).x0 > right + 2, label.get_text()


def test_a_fabric_without_gpus_has_no_gpu_columns():
    fig, _, heat = _drawn(open_fabric("leaf-spine:hosts=4,gpus=0"))
    texts = [t.get_text() for t in _labels(heat)]
    assert not any(t.replace("−", "-").startswith("-") for t in texts), texts
    assert texts == [], texts
    assert "no GPUs" in heat.get_xlabel()


def test_one_gpu_fabric_still_has_its_host_tick():
    fig, _, heat = _drawn(open_fabric("leaf-spine:hosts=1,gpus=1"))
    assert [t.get_text() for t in _labels(heat)] == ["1"]
    assert np.isfinite(heat.get_xlim()).all()
