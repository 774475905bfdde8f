"""Markdown section and plot for the placement benchmark (only ``## Placement`` is rewritten)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADER = "## Placement"


def _table(cols, rows) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def render_section(meta, quality, scale, gaps, summarise, common_cost) -> str:
    lines = [HEADER, "", f"Machine: {meta['machine']}. Date: {meta['date']}. Command: `{meta['command']}` "
             f"(whole run {meta['wall_s']:.0f} s). CP-SAT: 1 worker, seed 0, time limit 1 s. Latency is wall "
             "time of `place()` (greedy warm start included for cpsat; one warm-up call first so the OR-Tools "
             "import is not timed) on a machine whose 2 cores are shared with other helpers' jobs, so "
             "absolute times are noisy; ratios within one run are comparable.", ""]
    for name, (rows, _fab, level) in quality.items():
        util = np.mean([r["util"] for r in rows if r.get("util")])
        lines += [f"### {name}, states {100 * util:.0f} % busy", "",
                  "Gangs of 8–1,024 GPUs as whole hosts (`nodes=N,gpus=8`, or `gpus=4` on GB200) where the free "
                  "capacity allows, plus `gpus=8` and `gpus=24` total-GPU requests.", ""]
        lines += _table(["solver", "placed", "infeasible", "p50 ms", "p99 ms", "mean cost",
                         f"mean {level} domains (multi-host)", "fragmentation after",
                         f"free whole {level} domains after"], summarise(rows))
        cc = common_cost(rows)
        base, ours = cc["slurm-tree"], cc["cpsat"]
        lines += ["", f"On the {ours[2]} instances every solver placed: mean cost cpsat {ours[0]:.2f} vs slurm-tree "
                  f"{base[0]:.2f}; mean {level} domains of multi-host gangs cpsat {ours[1]:.2f} vs slurm-tree "
                  f"{base[1]:.2f} (ratio {base[1] / ours[1]:.2f}×, target ≥ 1.5×); the fewest {level} domains that "
                  f"could hold those gangs at all (capacity lower bound) average {cc['bound'][1]:.2f}."]
        if base[1] / ours[1] < 1.5:
            lines += ["", f"**Target missed here:** slurm-tree already spans only {base[1] / cc['bound'][1]:.2f}× the "
                      f"lower bound of {level} domains, so no placement can span 1.5× fewer; cpsat instead trades "
                      "domains against spine/core crossings and fragmentation (see mean cost)."]
        lines += [""]
    lines += ["### Latency growth (DGX SuperPOD, 3 states each, gangs 8 GPUs … ¼ of the pod)", ""]
    lines += _table(["GPUs", "solver", "placements", "p50 ms", "p99 ms", "max ms"],
                    [(g, s, n, f"{a:.1f}", f"{b:.1f}", f"{c:.1f}") for g, s, n, a, b, c in scale])
    lines += ["", "Gangs here are whole hosts (`nodes=N,gpus=8`); the quality tables above include total-GPU "
              "requests, which on the 16,384-GPU pod use the domain-level CP-SAT model and can reach the 1 s "
              "limit (then the best feasible answer is returned, marked not proven optimal).", "",
              "![placement latency](placement_latency.png)", ""]
    lines += ["### Optimality gap (64-host SuperPOD): cpsat at 1 s vs cpsat run to optimality (60 s cap)", ""]
    lines += _table(["state", "request", "cpsat @1 s", "optimum", "proven", "cpsat gap", "greedy gap",
                     "slurm-tree gap"],
                    [(s, f"`{t}`", f"{a:.3f}", f"{b:.3f}", p, f"{100 * g:.3f} %", f"{100 * gg:.2f} %",
                      f"{100 * gs:.2f} %") for s, t, a, b, p, g, gg, gs in gaps])
    worst = max((g[5] for g in gaps), default=0.0)
    mean_g = np.nanmean([g[6] for g in gaps]) if gaps else 0.0
    mean_s = np.nanmean([g[7] for g in gaps]) if gaps else 0.0
    lines += ["", f"Worst cpsat gap {100 * worst:.3f} % (target ≤ 1 %); mean gap of greedy {100 * mean_g:.2f} %, "
              f"of slurm-tree {100 * mean_s:.2f} %. Costs are lexicographic (modelled all-reduce ms first). "
              "\"proven\" is False where a rail-aligned request has several feasible GPU-index patterns "
              "(CP-SAT optimises the one greedy picked) or where CP-SAT's collective bound is not tight "
              "(rail crossings, channel imbalance: docs/placement.md), so \"optimum\" is then the best found.",
              ""]
    return "\n".join(lines)


def write_section(text: str, scale) -> None:
    DOCS.mkdir(exist_ok=True)
    path = DOCS / "benchmarks.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(HEADER + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(HEADER))
        new = old[:start] + text + (old[nxt:] if nxt >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n")
    _plot(scale, DOCS / "placement_latency.png")


def _plot(scale, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for solver in sorted({s for _, s, *_ in scale}):
        pts = [(g, p99) for g, s, _, _, p99, _ in scale if s == solver]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{solver} p99")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("GPUs in the fabric")
    ax.set_ylabel("decision latency p99 (ms)")
    ax.axhline(1000, color="grey", ls="--", lw=0.8)
    ax.set_title("Placement latency vs fabric size (DGX H100 SuperPOD)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
