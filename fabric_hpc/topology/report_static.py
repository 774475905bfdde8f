"""The static picture of the topology report (matplotlib, Agg, no pyplot state).

The aggregated view: one row per leaf group with its utilisation bar and a per-GPU heat strip,
grouped by parent, with a legend. :func:`fabric_hpc.topology.report.write_report` calls it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.topology.model import Fabric
from fabric_hpc.topology.report import DOWN, DOWN_COLOR, FREE, FREE_COLOR, JobStats, _write, plural, visible

# -- static picture (matplotlib) ----------------------------------------------------------------
_MAX_ROWS = 96
_ZWSP = "\u200b"
LABEL_CHARS = 40  # a job id or group name in the picture is cut to this (the page has it whole)


def mpl_text(text: object, limit: int | None = None) -> str:
    """Any text (job ids, titles, names) as matplotlib draws it literally, cut to ``limit`` characters.

    Bidi controls are shown as ``[U+202E]``; ``$`` is escaped, so no user text is parsed as maths (an unbalanced ``$\\frac$`` would fail
    the whole picture); a leading ``_`` gets a zero-width space in front, so a legend keeps it.
    Every string that reaches matplotlib goes through here.
    """
    out = visible(str(text))  # as on the page: bidi controls shown, never applied
    if limit is not None and len(out) > limit:
        out = out[:limit - 1] + "…"
    out = out.replace("$", "\\$")
    return _ZWSP + out if out.startswith("_") else out


@contextlib.contextmanager
def user_text_drawing() -> Iterator[None]:
    """While matplotlib draws user text: never handed to LaTeX, and a CJK or emoji name the font lacks is
    drawn as a box without a Python warning on the caller's stderr (only that warning, only meanwhile)."""
    import matplotlib

    with matplotlib.rc_context({"text.usetex": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def static_images(fab: Fabric, codes: np.ndarray, jobs: list[str], stats: dict[str, JobStats], title: str,
                  formats: tuple[str, ...]) -> dict[str, bytes]:
    """The static picture in each format (``png``, ``svg``), in memory: nothing is written."""
    with user_text_drawing():
        fig = _figure(fab, codes, jobs, stats, title)
        out = {}
        for fmt in formats:
            blob = io.BytesIO()
            fig.savefig(blob, format=fmt)
            out[fmt] = blob.getvalue()
    return out


def _static_rows(fab: Fabric) -> tuple[list[str], list[list[str]], list[str]]:
    """Rows of the static picture: leaf groups (or the level above when there are too many).

    Returns row names, the hosts of each row, and the parent label of each row.
    """
    if not fab.groups:
        return ["all hosts"], [list(fab.hosts)], [""]
    for lv in fab.levels:
        rows = [g for g in fab.groups.values() if g.level == lv]
        if len(rows) <= _MAX_ROWS or lv == fab.levels[-1]:
            break

    def hosts_of(name: str) -> list[str]:
        g = fab.groups[name]
        kids = [c.name for c in fab.groups.values() if c.parent == name]
        return list(g.hosts) + [h for k in kids for h in hosts_of(k)]

    return [g.name for g in rows], [hosts_of(g.name) for g in rows], [g.parent or "" for g in rows]


def write_static(fab: Fabric, codes: np.ndarray, jobs: list[str], stats: dict[str, JobStats], title: str,
                 *, png: str | Path | None = None, svg: str | Path | None = None) -> None:
    """Aggregated picture: per group a utilisation bar and a per-GPU heat strip, and a legend.
    Both pictures are drawn before either file is written."""
    paths = {fmt: Path(p) for fmt, p in (("png", png), ("svg", svg)) if p is not None}
    for fmt, blob in static_images(fab, codes, jobs, stats, title, tuple(paths)).items():
        _write(paths[fmt], blob)


def _figure(fab: Fabric, codes: np.ndarray, jobs: list[str], stats: dict[str, JobStats], title: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names, row_hosts, parents = _static_rows(fab)
    colors = [FREE_COLOR, DOWN_COLOR] + [stats[j].color for j in jobs]
    width = max(max((sum(len(fab.host_gpus(h)) for h in hs) for hs in row_hosts), default=1), 1)
    grid = np.full((len(names), width), np.nan)
    for r, hosts in enumerate(row_hosts):
        ids = [fab.gpu_pos[g] for h in hosts for g in fab.host_gpus(h)]
        grid[r, :len(ids)] = codes[ids]
    legend = _legend_entries(codes, jobs, stats)
    ncol = _legend_cols([label for label, _, _ in legend])
    legend_rows = -(-len(legend) // ncol)
    bottom, top = 0.75 + 0.2 * legend_rows, 0.85
    height = bottom + top + 0.2 * max(len(names), 3)
    fig = Figure(figsize=(13, height), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1, 2, width_ratios=[1, 2.4], left=0.14, right=0.99, wspace=0.03,
                          top=1 - top / height, bottom=bottom / height)
    bars, heat = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    y = np.arange(len(names))
    _share_bars(bars, grid, colors)
    bars.set_xlim(0, 1)
    bars.set_ylim(len(names) - 0.5, -0.5)
    labels = [mpl_text(p, LABEL_CHARS) + " ▸ " + mpl_text(n, LABEL_CHARS) if p and (r == 0 or parents[r - 1] != p)
              else mpl_text(n, LABEL_CHARS)
              for r, (n, p) in enumerate(zip(names, parents, strict=True))]
    bars.set_yticks(y, labels, fontsize=7 if len(names) > 24 else 8)
    bars.set_xticks([0, 0.5, 1], ["0", "50%", "100%"], fontsize=7)
    bars.get_xticklabels()[-1].set_horizontalalignment("right")  # clear of the strip's first tick
    bars.set_xlabel("GPUs by state", fontsize=8)
    heat.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest",
                cmap=ListedColormap(colors), vmin=-0.5, vmax=len(colors) - 0.5)
    heat.set_yticks([])
    _host_ticks(fab, heat, row_hosts)
    _separate_parents(bars, heat, parents)
    _static_titles(fig, fab, codes, len(jobs), title)
    h = fig.get_figheight()
    fig.legend(handles=[Patch(facecolor=c, hatch=hatch, label=label) for label, c, hatch in legend], loc="lower left",
               ncol=ncol, fontsize=7, frameon=False, bbox_to_anchor=(0.01, 0.02 / h))
    return fig


def _share_bars(bars: Any, grid: np.ndarray, colors: list[str]) -> None:
    """Per row, the share of each state that holds GPUs: jobs, then down, free last (as on the page).
    One rectangle per (row, state), all in one collection (down, hatched, as bars): a patch per
    rectangle took ~4 ms each, 24 s for 4,096 jobs."""
    from matplotlib.collections import PolyCollection

    rows = grid.shape[0]
    seen = np.maximum(np.sum(~np.isnan(grid), axis=1), 1)
    counts = np.zeros((rows, len(colors)))
    r, c = np.nonzero(~np.isnan(grid))
    np.add.at(counts, (r, grid[r, c].astype(np.int64)), 1)
    order = [*range(2, len(colors)), DOWN, FREE]
    frac = counts[:, order] / seen[:, None]
    left = np.cumsum(frac, axis=1) - frac
    verts, faces = [], []
    for row, k in zip(*np.nonzero(frac)):  # rows in order, each row's states in page order
        x0, x1, code = left[row, k], left[row, k] + frac[row, k], order[k]
        if code == DOWN:
            bars.barh(row, frac[row, k], left=x0, color=colors[code], height=0.8, edgecolor="none",
                      hatch="////")
            continue
        verts.append([(x0, row - 0.4), (x1, row - 0.4), (x1, row + 0.4), (x0, row + 0.4)])
        faces.append(colors[code])
    if verts:
        bars.add_collection(PolyCollection(verts, facecolors=faces, edgecolors="none", linewidths=0))


def _host_ticks(fab: Fabric, heat: Any, row_hosts: list[list[str]]) -> None:
    """Host boundaries on the heat strip when every host has the same number of GPUs."""
    from matplotlib.ticker import MaxNLocator

    per = {len(fab.host_gpus(h)) for hs in row_hosts for h in hs}
    most = max((len(hs) for hs in row_hosts), default=0)
    if not any(per):  # no GPU anywhere: no columns to number
        heat.set_xticks([])
        heat.set_xlabel("no GPUs in these hosts", fontsize=8)
        return
    if len(per) != 1 or not most or (g := per.pop()) == 0:
        heat.set_xlabel("GPUs of each group, in host order (one column per GPU)", fontsize=8)
        heat.xaxis.set_major_locator(MaxNLocator(integer=True))  # columns are whole GPUs: no 2.5
        heat.tick_params(axis="x", labelsize=7)
        return
    if most <= 160:
        for b in range(1, most):
            heat.axvline(b * g - 0.5, color="white", linewidth=0.6)
    step = max(1, -(-most // 16))
    hosts = list(range(0, most, step))
    heat.set_xticks([h * g + (g - 1) / 2 for h in hosts], [str(h + 1) for h in hosts], fontsize=7)
    its = "its GPU" if g == 1 else f"its {g} GPUs, left to right"
    heat.set_xlabel(f"host within the group (each host: {its})", fontsize=8)


def _separate_parents(bars: Any, heat: Any, parents: list[str]) -> None:
    for r in range(1, len(parents)):
        if parents[r] != parents[r - 1]:
            for ax in (bars, heat):
                ax.axhline(r - 0.5, color="#333333", linewidth=1.2)


def _static_titles(fig: Any, fab: Fabric, codes: np.ndarray, njobs: int, title: str) -> None:
    free, down = int((codes == FREE).sum()), int((codes == DOWN).sum())
    alloc = len(codes) - free - down
    h = fig.get_figheight()
    counts = (f" — {plural(len(fab.hosts), 'host')}, {plural(len(fab.gpus), 'GPU')}: {free:,} free, "
              f"{alloc:,} allocated ({plural(njobs, 'job')}), {down:,} down")
    _one_line(fig, fig.text(0.01, 1 - 0.12 / h, "", fontsize=12, fontweight="bold", va="top"), title, "", 150)
    _one_line(fig, fig.text(0.01, 1 - 0.42 / h, "", fontsize=9, va="top"), fab.spec.description or fab.name,
              counts, 100)


def _one_line(fig: Any, artist: Any, text: str, suffix: str, limit: int) -> None:
    """Set ``artist`` to ``text`` on one line (newlines and runs of blanks become one space), cut with
    an ellipsis to at most ``limit`` characters and to the figure's width, then ``suffix`` (kept whole).
    A multi-line description would otherwise be drawn over the chart."""
    flat = " ".join(str(text).split())
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.x1 * 0.99

    def fits(n: int) -> bool:
        artist.set_text(mpl_text(flat, n) + suffix)
        return artist.get_window_extent(renderer).x1 <= room

    n = min(len(flat), limit)
    if n and not fits(n):
        lo, hi = 1, n  # fits(lo) is assumed; the longest cut that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        n = lo
    artist.set_text(mpl_text(flat, n) + suffix)


_LEGEND_JOBS = 14


def _legend_entries(codes: np.ndarray, jobs: list[str], stats: dict[str, JobStats]) -> list[tuple[str, str, str | None]]:
    """(label, colour, hatch) of each legend entry: free, down, up to 14 jobs, and how many more."""
    free, down = int((codes == FREE).sum()), int((codes == DOWN).sum())
    out = [(f"free ({free:,})", FREE_COLOR, None), (f"down ({down:,})", DOWN_COLOR, "////")]
    out += [(mpl_text(j, LABEL_CHARS) + f" ({plural(stats[j].gpus, 'GPU')}, {stats[j].nvlink_domains} NVL dom.)",
             stats[j].color, None) for j in jobs[:_LEGEND_JOBS]]
    if len(jobs) > _LEGEND_JOBS:
        out.append((f"… {plural(len(jobs) - _LEGEND_JOBS, 'more job')}", "white", None))
    return out


def _legend_cols(labels: list[str]) -> int:
    """Columns that fit the 13-inch figure: about 4 pt per character at 7 pt, 30 pt for the patch."""
    longest = max(len(label) for label in labels)
    return max(1, min(5, len(labels), int(13 * 72 * 0.97 // (longest * 4 + 30))))
