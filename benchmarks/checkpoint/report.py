"""Targets of issue 6 checked against one run's rows, and the docs/benchmarks.md section."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

TITLE = "Checkpoints"


def _get(rows: list[dict], method: str, op: str) -> dict | None:
    hits = [r for r in rows if r["method"] == method and r["op"] == op]
    return hits[0] if hits else None


def _avg(rows: list[dict], prefix: str, op: str, key: str = "gbps", best: bool = False) -> float | None:
    """Median (or best: max GB/s, min seconds) over the repetitions of one contender."""
    vals = [r[key] for r in rows if r["method"].startswith(prefix) and r["op"] == op]
    if not vals:
        return None
    if best:
        return min(vals) if key == "seconds" else max(vals)
    return median(vals)


def targets(rows: list[dict], best: bool = False) -> list[dict[str, Any]]:
    """The issue's targets as ratios of medians (or, with ``best``, of best-of-N values)."""
    def avg(prefix: str, op: str, key: str = "gbps") -> float | None:
        return _avg(rows, prefix, op, key, best)

    raw_w, raw_r = avg("raw fsync'd file", "save"), avg("raw fsync'd file", "restore")
    fab_w = avg("fabric sync", "save")
    fab_r = avg("fabric sync", "restore")
    dcp_w = avg("torch.distributed.checkpoint", "save")
    dcp_r = avg("torch.distributed.checkpoint", "restore")
    zarr_w = avg("zarr defaults", "save")
    out = []

    def check(name: str, value: float | None, goal: float, unit: str = "x", higher: bool = True) -> None:
        if value is None:
            out.append({"target": name, "value": None, "goal": goal, "met": None})
            return
        met = value >= goal if higher else value <= goal
        out.append({"target": name, "value": round(value, 3), "goal": goal, "unit": unit, "met": met})

    check("save / raw durable write", fab_w / raw_w if fab_w and raw_w else None, 0.90)
    check("save / torch.distributed.checkpoint save", fab_w / dcp_w if fab_w and dcp_w else None, 1.0)
    check("save / zarr defaults save", fab_w / zarr_w if fab_w and zarr_w else None, 3.0)
    check("restore / torch.distributed.checkpoint restore (cold)", fab_r / dcp_r if fab_r and dcp_r else None, 1.5)
    check("restore / raw read (cold)", fab_r / raw_r if fab_r and raw_r else None, 0.80)
    steady = _get(rows, "fabric async (steady)", "save")  # staging reserved; see the table for the 1st
    sync_s = avg("fabric sync", "save", "seconds")
    check("async stall / sync save time", steady["stall_s"] / sync_s if steady and sync_s else None,
          0.10, higher=False)
    probe = _get(rows, "fabric restore, fresh process", "restore")
    check("restore peak RSS / state size", probe["rss_ratio"] if probe else None, 1.10, higher=False)
    same = avg("fabric mpi restore 4->4", "restore")
    for n in (2, 8):
        other = avg(f"fabric mpi restore 4->{n}", "restore")
        check(f"resharded restore 4->{n} / same layout 4->4",
              other / same if other and same else None, 0.80)
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def section(meta: dict, rows: list[dict], verdicts: list[dict], best: list[dict] | None = None) -> str:
    """The body of the section (machine, date and command are added by benchmarks._report)."""
    lines = [f"Measured {meta['date']} (the date above is when this section was written). "
             f"State: {meta['state']}; cold-cache reads: {meta['cold_cache']}; machine shared with other "
             f"jobs (load average at the end {', '.join(f'{x:.1f}' for x in meta['load'])}); local ext4 disk.", "",
             "| method | op | seconds | GB/s | caller stall s | peak RSS above start GiB | size on disk GiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['op']} | {_fmt(r['seconds'])} | {_fmt(r['gbps'], 3)} | "
                     f"{_fmt(r.get('stall_s'))} | {_fmt(r.get('peak_rss_extra_gib', r.get('peak_rss_total_gib')))} | "
                     f"{_fmt(r.get('disk_gib'))} |")
    lines += ["", "Targets (issue 6), ratios within this run: of the medians over the repetitions, and of the "
              "best of them (the run least disturbed by the other jobs on the machine):", "",
              "| target | median ratio | met | best-of ratio | met | goal |", "|---|---:|---|---:|---|---:|"]
    best = best or verdicts
    for v, b in zip(verdicts, best):
        goal = ("<= " if "stall" in v["target"] or "RSS" in v["target"] else ">= ") + str(v["goal"])
        met = ["n/a" if x["met"] is None else ("yes" if x["met"] else "**no**") for x in (v, b)]
        lines.append(f"| {v['target']} | {_fmt(v['value'], 3)} | {met[0]} | {_fmt(b['value'], 3)} | {met[1]} | {goal} |")
    lines.append("")
    return "\n".join(lines)


def write_section(meta: dict, rows: list[dict], verdicts: list[dict], best: list[dict] | None = None,
                  notes: str = "") -> Path:
    """Replace the ``## Checkpoints`` section of docs/benchmarks.md (shared writer: the other
    sections are left alone; machine, date and command are recorded)."""
    from benchmarks._report import write_section as shared_write
    body = section(meta, rows, verdicts, best) + ("\n" + notes.strip() + "\n" if notes else "")
    return shared_write(TITLE, body, command=meta["command"])
