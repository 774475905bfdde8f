"""The static picture of a cluster with thousands of jobs is drawn with a few artists, not one
matplotlib patch per (row, job): 4,096 single-GPU jobs on a 16-SU pod took ~24 s for the PNG
(0.5 s for the page), once per ``fabric slurm report --watch --png`` cycle. Every (row, state)
that holds GPUs is still one rectangle of its colour, in the page's order (jobs, down, free)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex

from fabric_hpc.topology import open_fabric
from fabric_hpc.topology.report import FREE_COLOR, _job_stats, state_codes
from fabric_hpc.topology.report_static import _figure


def _rectangles(ax):
    """(row, left, width, colour) of every drawn bar, from patches and collections alike."""
    out = []
    for p in ax.patches:
        row = round(p.get_y() + p.get_height() / 2)
        out.append((row, p.get_x(), p.get_width(), to_hex(p.get_facecolor())))
    for c in ax.collections:
        for path, face in zip(c.get_paths(), np.broadcast_to(c.get_facecolors(), (len(c.get_paths()), 4))):
            (x0, y0), (x1, y1) = path.vertices.min(axis=0), path.vertices.max(axis=0)
            out.append((round((y0 + y1) / 2), x0, x1 - x0, to_hex(face)))
    return sorted(out)


def test_thousands_of_jobs_are_a_few_artists():
    fab = open_fabric("superpod:sus=16")
    occ = {g: f"job-{i}" for i, g in enumerate(fab.gpus[:4000])}
    occ.update({h: "down" for h in fab.hosts[-8:]})
    codes, jobs = state_codes(fab, occ)
    stats = _job_stats(fab, codes, jobs)
    bars = _figure(fab, codes, jobs, stats, "t").axes[0]
    assert len(bars.patches) + len(bars.collections) <= 2 * 16 + 2
    rects = _rectangles(bars)
    assert len(rects) == 4000 + 1 + 1  # every job; down and free in the last SU only
    assert {c for *_, c in rects} >= {stats["job-0"].color, stats["job-3999"].color, FREE_COLOR}
    for row in range(16):
        mine = [r for r in rects if r[0] == row]
        assert abs(sum(w for _, _, w, _ in mine) - 1) < 1e-9  # the shares of a row add up to the whole bar
        lefts = [left for _, left, _, _ in sorted(mine, key=lambda r: r[1])]
        assert lefts[0] == 0
