"""Inference harness benchmarks (CPU, simulated engine); writes ``## Inference harness`` in
docs/benchmarks.md.

    .venv/bin/python -m benchmarks.inference                 # all three, 10-minute RSS run
    .venv/bin/python -m benchmarks.inference --rss-seconds 120 --no-write   # quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fabric_hpc.inference.bench import (
    BENCH_LIMITS,
    WORKLOAD,
    bench_overhead,
    bench_rss,
    bench_saturation,
)
from benchmarks._report import write_section
from fabric_hpc.inference.simulated import H100_1B

TITLE = "Inference harness"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def render(o: dict, s: dict, r: dict) -> str:
    lines = [
        "Absolute rates depend on what else the 2 cores are doing; compare within one run.", "",
        "| Measure | Target | Result | |", "|---|---|---|---|",
        f"| scheduling core, zero-cost engine (items/s, wall clock, best of {o['repeats']}) "
        f"| >= 100,000 | {o['core_items_per_s']:,.0f} | {_verdict(o['core_items_per_s'] >= 1e5)} |",
        f"| scheduling core, zero-cost engine (items per CPU-second of its thread) | >= 100,000 "
        f"| {o['core_items_per_cpu_s']:,.0f} | {_verdict(o['core_items_per_cpu_s'] >= 1e5)} |",
        f"| threaded pipeline, zero-cost engine (items/s) | (context) | "
        f"{o['pipeline_items_per_s']:,.0f} | |",
        f"| padding waste, ragged workload | < 1 % | {s['padding_waste']:.2%} "
        f"(prefill only: {s['prefill_padding_waste']:.2%}) | {_verdict(s['padding_waste'] < 0.01)} |",
        f"| static batching waste, same workload, B=32 / B=128 | (baseline) | "
        f"{s['static_b32_waste']:.1%} / {s['static_b128_waste']:.1%} | |",
        f"| engine busy fraction (time in step / wall) | >= 97 % | "
        f"{s['engine_busy_fraction']:.1%} | {_verdict(s['engine_busy_fraction'] >= 0.97)} |",
    ]
    if "growth" in r:
        lines.append(
            f"| RSS growth after {r['warmup_s']:.0f} s warm-up over {r['duration_s']:.0f} s | < 2 % | "
            f"{r['growth']:.2%} ({r['rss_after_warmup_kib'] / 1024:.1f} -> max "
            f"{r['rss_max_kib'] / 1024:.1f} MiB) | {_verdict(r['growth'] < 0.02)} |")
    else:
        lines.append("| RSS growth | < 2 % | not measured (run shorter than warm-up) | **MISSED** |")
    lines += [
        "",
        f"Overhead: {o['items']:,} items, prompt lengths from the ragged workload, one output "
        "token each, `NullEngine` (returns every held sequence at the next step). The core is "
        "admission + shape lanes + engine feeding + completion in one thread; the pipeline adds "
        "the intake, executor and writer threads and their bounded queues (results discarded).",
        "",
        f"Saturation: {s['items']:,} items of the ragged workload ({json.dumps(WORKLOAD)}; "
        "ShareGPT-like log-normals, medians and clips from the engines issue, sigmas our choice, "
        "not fitted to the data set: see docs/inference.md), "
        f"simulated engine with the `H100_1B` cost model ({H100_1B}) sleeping its modelled step "
        f"time, limits {BENCH_LIMITS}; results journalled to a temp dir. {s['engine_steps']:,} "
        f"steps, {s['wall_s']:.1f} s wall, {s['output_tokens_per_s']:,.0f} modelled output tokens/s "
        f"(a cost-model figure, not a GPU measurement). Padding waste = padding slots / all "
        "processed token slots (padded prefill + decode); static-batching waste counts prompt and "
        "generation padding the same way. Busy fraction = time inside `engine.step()` / wall: "
        f"the gaps the harness left between steps were {1 - s['engine_busy_fraction']:.1%} of wall "
        f"time. The steps themselves took {s['engine_busy_fraction'] * s['wall_s']:.1f} s against "
        f"{s['modelled_busy_s']:.1f} s modelled (sleep wake-up latency on a loaded machine).",
        "",
    ]
    if "growth" in r:
        lines.append(
            f"RSS: a fresh interpreter; endless ragged input generated faster than the engine runs, "
            f"same engine and "
            f"limits, journalled sink; {r['items_done']:,} items completed, busy fraction "
            f"{r['engine_busy_fraction']:.1%}, queue depths at the end {r['queue_depths_end']}.")
        samples = r.get("samples") or []
        if samples:
            marks = [samples[min(len(samples) - 1, round(f * (len(samples) - 1)))]
                     for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
            lines.append("RSS over time: " + ", ".join(
                f"{t:.0f} s: {kib / 1024:.2f} MiB" for t, kib in marks) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inference")
    ap.add_argument("--items", type=int, default=200_000, help="overhead benchmark items")
    ap.add_argument("--saturation-items", type=int, default=8000)
    ap.add_argument("--rss-seconds", type=float, default=600.0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs alone")
    ap.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_only:  # child process: RSS measured in a fresh interpreter
        r = bench_rss(args.rss_seconds, warmup_s=min(60.0, args.rss_seconds / 5))
        print(json.dumps(r), flush=True)
        return 0
    o = bench_overhead(args.items)
    print(json.dumps(o), flush=True)
    s = bench_saturation(args.saturation_items)
    print(json.dumps(s), flush=True)
    child = subprocess.run([sys.executable, "-m", "benchmarks.inference", "--rss-only",
                            "--rss-seconds", str(args.rss_seconds)], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[2])
    r = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(r), flush=True)  # includes the (seconds, RSS KiB) samples
    command = "python -m benchmarks.inference " + " ".join(argv or sys.argv[1:])
    text = render(o, s, r)
    print(text)
    if not args.no_write:
        write_section(TITLE, text, command=command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
