"""Scheduler and simulator benchmark: ``.venv/bin/python -m benchmarks.scheduler [--quick] [--full-speed
[--repeat N]] [--no-write]``.

1. Simulator speed: the fabric policy with the greedy placer replaying synthetic gang workloads on
   DGX H100 SuperPODs; growth with job count (2,048 GPUs) and with cluster size; events/s, jobs/s
   and the share of time spent inside the placement solver. ``--full-speed`` also replays 50,000
   jobs on 2,048 GPUs for real, ``--repeat`` times (default 3; the median is reported, with every
   run's time, as this shared machine's speed varies between runs); otherwise the 50,000-job time
   is extrapolated and said so.
2. fabric vs the Slurm-like baseline, each pair in one process on the same jobs: gang workloads on
   a 4-SU SuperPOD and on 8 GB200 NVL72 racks, and the Alibaba openb trace (bundled) on a 32-GPU
   leaf-spine cluster (the trace's average demand is ~17 GPUs; on a bigger cluster nothing queues).
Writes the ``## Scheduler and simulator`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks._report import write_section
from fabric_hpc.scheduler import fabric_policy, slurm_policy
from fabric_hpc.sim import Simulator, gang_workload, load_trace, summarize
from fabric_hpc.sim.rows import NEVER_RAN, NEVER_SCHEDULED, NOT_GPU
from fabric_hpc.topology import open_fabric

#: Jain's index differences below this are noise (one job more or less in an account's mean).
JAIN_TOL = 0.005
SPEED_HISTORY = "613 s → 314 s → 218 s → 148 s → 141 s"  # earlier sessions' measurements of the same replay
OPENB = Path(__file__).resolve().parents[2] / "data" / "traces" / "alibaba_openb_pod_list_default.csv"


def speed_run(fab_ref: str, jobs: int, seed: int = 1, load: float = 1.0) -> dict:
    fab = open_fabric(fab_ref)
    work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), load=load, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    res = Simulator(fab, fabric_policy(placement="greedy"), work).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = summarize(res)
    queue = res.timeline["queue"]
    return {"fabric": fab_ref, "gpus": len(fab.gpus), "jobs": jobs, "wall_s": wall, "events": res.stats["events"],
            "steps": res.stats["steps"], "events_per_s": res.stats["events"] / wall, "jobs_per_s": jobs / wall,
            "solver_calls": res.stats["solver_calls"], "solver_share": res.stats["solver_s"] / wall,
            "finished": s["finished"], "seed": seed, "load": load, "cpu_s": cpu,
            "mean_queue": sum(queue) / max(len(queue), 1), "max_queue": max(queue, default=0),
            "load_avg": os.getloadavg()[0]}


def sweep(runs: list[tuple[int, float]], jobs: int = 50_000) -> str:
    """The 50,000-job replay on 2,048 GPUs for each (seed, load): a table of wall and CPU times (on a
    shared machine the wall times are inflated by the other jobs running; the CPU time of this
    process much less), the pending queue's mean and largest length, and the 1-minute load average
    at the end of each run."""
    lines = ["| seed | load | wall s | CPU s | steps | events | solver share | mean / max queue | finished | "
             "load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, load in runs:
        r = speed_run("superpod:sus=8", jobs, seed=seed, load=load)
        print(json.dumps(r), flush=True)
        lines.append(f"| {seed} | {load} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['steps']} | {r['events']} | "
                     f"{r['solver_share']:.0%} | {r['mean_queue']:.0f} / {r['max_queue']} | {r['finished']} | "
                     f"{r['load_avg']:.1f} |")
    return "\n".join(lines)


def full_speed(repeat: int) -> dict:
    """The 50,000-job replay ``repeat`` times (this machine's speed varies from run to run): the
    median run's numbers, with every run's wall time in ``walls`` (in run order)."""
    runs = [speed_run("superpod:sus=8", 50_000) for _ in range(repeat)]
    for r in runs:
        print(json.dumps(r), flush=True)
    median = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {**median, "walls": [r["wall_s"] for r in runs]}


def _walls(full: dict) -> str:
    return ", ".join(f"{w:.0f}" for w in full["walls"])


def compare(name: str, fab_ref: str, jobs: list, extra: dict[str, object] | None = None, tag: str = "") -> dict:
    fab = open_fabric(fab_ref)
    out: dict = {"workload": name, "topology": fab_ref, "tag": tag or fab_ref, "gpus": len(fab.gpus),
                 "jobs": len(jobs), "policies": {}}
    pols = {"slurm": slurm_policy(), "fabric": fabric_policy()}
    pols.update(extra or {})
    for label, pol in pols.items():
        t0 = time.perf_counter()
        out["policies"][label] = summarize(Simulator(fab, pol, jobs).run())
        out["policies"][label]["bench_wall_s"] = time.perf_counter() - t0
    return out


def verdicts(c: dict) -> dict:
    s, f = c["policies"]["slurm"], c["policies"]["fabric"]
    jct = 1 - f["mean_jct_s"] / s["mean_jct_s"] if s["mean_jct_s"] else 0.0
    dom = (s["mean_domains_spanned"] / f["mean_domains_spanned"]) if f["mean_domains_spanned"] and s["mean_domains_spanned"] else None
    return {"jct_reduction": jct, "jct_ok": jct >= 0.20, "p99_wait_ratio": f["p99_wait_s"] / max(s["p99_wait_s"], 1e-9),
            "p99_ok": f["p99_wait_s"] < s["p99_wait_s"], "domains_ratio": dom,
            "domains_ok": dom is not None and dom >= 1.5, "jain_delta": f["jain_accounts"] - s["jain_accounts"],
            "jain_ok": f["jain_accounts"] >= s["jain_accounts"] - JAIN_TOL}


def _yn(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


ROWS = [("mean_jct_s", "mean JCT (h)", 1 / 3600), ("p50_jct_s", "p50 JCT (h)", 1 / 3600),
        ("p99_jct_s", "p99 JCT (h)", 1 / 3600), ("mean_wait_s", "mean wait (h)", 1 / 3600),
        ("p99_wait_s", "p99 wait (h)", 1 / 3600), ("mean_bounded_slowdown", "mean bounded slowdown", 1),
        ("gpu_utilisation", "GPU utilisation", 1), ("makespan_s", "makespan (h)", 1 / 3600), ("fragmentation", "fragmentation", 1),
        ("mean_domains_spanned", "mean domains spanned (multi-host)", 1), ("mean_stretch", "mean comm. stretch", 1),
        ("jain_accounts", "Jain (accounts)", 1), ("preemptions", "preemptions", 1), ("gpu_hours_lost", "GPU-h lost", 1),
        ("finished", "jobs completed", 1), ("timeouts", "jobs ended at walltime (not in JCT)", 1),
        ("rejected", "jobs that can never fit (rejected)", 1), ("bench_wall_s", "replay wall time (s)", 1)]


def speed_notes(full: dict | None) -> str:
    """The 50,000-job replay against its target, with this run's numbers."""
    if not full:
        return ""
    if full["wall_s"] >= 120:
        return notes(full, []).removeprefix("Why targets are missed where they are: ")
    return notes(full, []).removeprefix("Every target is met in this run. ")


def notes(full: dict | None, comps: list[dict]) -> str:
    """Why a target is missed, with this run's numbers."""
    out = []
    if full and full["wall_s"] >= 120:
        out.append(f"Speed: 50,000 jobs on 2,048 GPUs took {full['wall_s']:.0f} s (median of runs of "
                   f"{_walls(full)} s) "
                   f"({full['solver_share']:.0%} of it inside the greedy solver, {full['solver_calls']} calls, "
                   f"{full['steps']} scheduling steps). Successive rounds of speed-ups took it {SPEED_HISTORY}, "
                   "each leaving every decision unchanged (pinned by tests/scheduler/test_pinned_schedule.py and "
                   "test_fast_paths.py, and by the replay's decision digest). What remains is mostly needed work: "
                   "one placement per job start and the reservation searches of backfill passes whose state "
                   "really changed; a wide margin needs a compiled placer or incremental reservations.")
    for c in comps:
        v, pol = verdicts(c), c["policies"]
        s, f = pol["slurm"], pol["fabric"]
        if v["domains_ratio"] is not None and not v["domains_ok"] and c["topology"].startswith("superpod"):
            out.append(f"{c['tag']} domains: a leaf domain there is a whole 256-GPU scalable unit and gangs "
                       f"are at most 128 GPUs, so slurm-tree's best-fit leaf already keeps most gangs in one SU: "
                       f"its {s['mean_domains_spanned']:.2f} domains per gang cap any ratio at "
                       f"{s['mean_domains_spanned']:.2f}× (fabric: {f['mean_domains_spanned']:.2f}).")
        if not v["jct_ok"] and abs(s["mean_stretch"] - f["mean_stretch"]) < 0.02:
            out.append(f"{c['tag']} JCT: the communication stretch is {s['mean_stretch'] - 1:.1%} (slurm-like) "
                       f"and {f['mean_stretch'] - 1:.1%} (fabric), so JCT gains come only from queueing, and the "
                       "long gangs' run time dominates mean JCT.")
        elif not v["jct_ok"]:
            out.append(f"{c['tag']} JCT: {v['jct_reduction']:.1%} lower; the communication stretch falls from "
                       f"{s['mean_stretch'] - 1:.1%} to {f['mean_stretch'] - 1:.1%} and the mean wait from "
                       f"{s['mean_wait_s'] / 3600:.2f} h to {f['mean_wait_s'] / 3600:.2f} h.")
    for c in comps:
        s, f = c["policies"]["slurm"], c["policies"]["fabric"]
        if f["gpu_utilisation"] < s["gpu_utilisation"] - 0.02:
            out.append(_utilisation_note(c["tag"], s, f))
    text = "Why targets are missed where they are: " + " ".join(out) if out else "Every target is met in this run."
    if full and full["wall_s"] < 120:
        text += (f" Simulator speed: {full['wall_s']:.0f} s for 50,000 jobs (median of runs of {_walls(full)} s); "
                 "earlier sessions measured "
                 f"{SPEED_HISTORY} for the same replay, every round leaving each decision unchanged (pinned by "
                 "tests/scheduler/test_pinned_schedule.py, test_fast_paths.py and the replay's decision digest).")
    return text


def render_speed(speed: list[dict], full: dict | None, quick: bool) -> str:
    lines = ["### Simulator speed (fabric policy, greedy placer, synthetic gangs at offered load 1.0)", "",
             "| fabric | GPUs | jobs | wall (s) | events | events/s | jobs/s | solver calls | time in solver |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in speed:
        lines.append(f"| {r['fabric']} | {r['gpus']} | {r['jobs']} | {r['wall_s']:.1f} | {r['events']} | "
                     f"{r['events_per_s']:.0f} | {r['jobs_per_s']:.1f} | {r['solver_calls']} | {r['solver_share']:.0%} |")
    big = [r for r in speed if r["gpus"] == 2048]
    rate = big[-1]["jobs_per_s"] if big else speed[-1]["jobs_per_s"]
    if full:
        lines += ["", f"**50,000 jobs on 2,048 GPUs, measured: {full['wall_s']:.0f} s, the median of "
                  f"{len(full['walls'])} runs** ({_walls(full)} s; {full['events_per_s']:.0f} events/s in the median "
                  f"run) — target < 120 s: {_yn(full['wall_s'] < 120)}."]
    else:
        est = 50_000 / rate
        lines += ["", f"50,000 jobs on 2,048 GPUs, **extrapolated** from the largest run above (not measured; "
                  f"`--full-speed` measures it): ~{est:.0f} s — target < 120 s: {_yn(est < 120)}."]
    if quick:
        lines += ["", "(--quick run: smaller workloads.)"]
    return "\n".join(lines)


def render_comps(comps: list[dict], quick: bool, *, walls: bool) -> str:
    lines: list[str] = []
    rows = ROWS if walls else [r for r in ROWS if r[0] != "bench_wall_s"]
    for c in comps:
        v = verdicts(c)
        pol = c["policies"]
        names = list(pol)
        s = pol["slurm"]
        lines += ["", f"### {c['workload']} — {c['topology']} ({c['gpus']} GPUs, {c['jobs']} jobs)", "",
                  "| metric | " + " | ".join(n if n != "slurm" else "slurm-like" for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for key, label, scale in rows:
            lines.append(f"| {label} | " + " | ".join(
                "–" if pol[n][key] is None else str(pol[n][key]) if isinstance(pol[n][key], int)
                else f"{pol[n][key] * scale:.3g}"
                for n in names) + " |")
        lines += ["", f"Targets: mean JCT ≥ 20 % lower: {v['jct_reduction']:+.1%} → {_yn(v['jct_ok'])}; "
                  f"p99 queueing delay lower: ×{v['p99_wait_ratio']:.2f} → {_yn(v['p99_ok'])}; "
                  f"domains spanned ≥ 1.5× lower ({s['domain_level']} level): "
                  + (f"{v['domains_ratio']:.2f}× → {_yn(v['domains_ok'])}" if v["domains_ratio"] else
                     "no multi-host gangs → n/a")
                  + f"; Jain no worse (tolerance {JAIN_TOL}): {v['jain_delta']:+.3f} → {_yn(v['jain_ok'])}."]
    if quick:
        lines += ["", "(--quick run: smaller workloads.)"]
    return "\n".join(lines)


def _utilisation_note(tag: str, s: dict, f: dict) -> str:
    """Why fabric's GPU utilisation (busy GPU-time over the span from the first submit to the last end)
    is lower: a later last job, or the same work done in fewer busy GPU-hours (less stretch)."""
    head = f"{tag} utilisation (not a target): it is busy GPU-time between the first submit and the last end"
    span = f"(makespan {f['makespan_s'] / 3600:.1f} h vs {s['makespan_s'] / 3600:.1f} h)"
    if f["makespan_s"] > s["makespan_s"]:
        return (f"{head}, and fabric's last job ends later {span}, e.g. when its short-first order starts a "
                "long gang last; see the mean JCT and wait rows for what the jobs saw.")
    return (f"{head}, and fabric ends sooner {span} but its jobs hold GPUs for fewer hours: "
            f"less communication stretch ({f['mean_stretch'] - 1:.1%} vs {s['mean_stretch'] - 1:.1%}) and {f['timeouts']} jobs "
            f"held to their walltime (vs {s['timeouts']}): busy GPU-hours fall more than the span does.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller workloads (for a smoke run)")
    ap.add_argument("--full-speed", action="store_true", help="also replay 50,000 jobs on 2,048 GPUs")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the 50,000-job replay (median reported)")
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--policies-only", action="store_true",
                    help="only the policy comparison (section 'Scheduler policy comparison'), without wall times")
    ap.add_argument("--sweep", metavar="SEED:LOAD,...", help="only replay 50,000 jobs on 2,048 GPUs for each "
                    "seed:load (e.g. 1:1.0,2027:1.0,7:1.0,2027:0.9,2027:1.5) and print the times; writes nothing")
    ap.add_argument("--sweep-jobs", type=int, default=50_000, help="jobs per --sweep replay (default 50,000)")
    a = ap.parse_args()
    if a.sweep:
        print(sweep([(int(k), float(v)) for k, v in (x.split(":") for x in a.sweep.split(","))], a.sweep_jobs))
        return
    q = a.quick
    speed, full = [], None
    comps = compare_all(q)
    if not a.policies_only:
        speed, full = speed_all(q, a)
    body = comparison_body(comps, q, a.policies_only)
    print(body)
    if a.json:
        a.json.write_text(json.dumps({"speed": speed, "full": full, "compare": comps}, indent=1, default=str))
    if a.no_write:
        return
    flags = (" --quick" if q else "") + (f" --full-speed --repeat {a.repeat}" if a.full_speed else "")
    if not a.policies_only:
        speed_body = render_speed(speed, full, q) + ("\n\n" + speed_notes(full) if full else "")
        speed_body += ("\n\nAll runs share the 2-core machine with other helpers' jobs: absolute times are noisy. "
                       "The policy comparison is the next section.")
        write_section("Scheduler and simulator", speed_body, command="python -m benchmarks.scheduler" + flags)
    write_section("Scheduler policy comparison", body,
                  command="python -m benchmarks.scheduler" + (" --policies-only" if a.policies_only else flags))


def comparison_body(comps: list[dict], q: bool, policies_only: bool) -> str:
    body = render_comps(comps, q, walls=not policies_only) + "\n\n" + notes(None, comps)
    body += ("\n\nJCT and bounded slowdown count only jobs that completed their work; jobs ended at their "
             "walltime are counted on their own, jobs that can never fit the fabric as rejected; bounded "
             "slowdown divides by the unstretched run time (docs/scheduler.md). Each slurm/fabric pair replays "
             "the same jobs in one process. Policies: docs/scheduler.md.")
    if policies_only:
        body += (" This run shared the 2-core machine with other jobs, so it reports no wall times; the "
                 "simulator's speed is in the section above.")
    return body


def speed_all(q: bool, a: argparse.Namespace) -> tuple[list[dict], dict | None]:
    speed = []
    for ref, n in ([("superpod:sus=8", 500), ("superpod:sus=8", 1000), ("superpod:sus=2", 1000)] if q else
                   [("superpod:sus=8", 1000), ("superpod:sus=8", 2000), ("superpod:sus=8", 4000),
                    ("superpod:sus=2", 2000), ("superpod:sus=4", 2000)]):
        speed.append(speed_run(ref, n))
        print(json.dumps(speed[-1]), flush=True)
    return speed, (full_speed(a.repeat) if a.full_speed else None)


def _skips(trace) -> str:
    """How many rows were skipped for each reason, in short words."""
    short = {NOT_GPU: "CPU-only", NEVER_SCHEDULED: "never scheduled", NEVER_RAN: "deleted when created"}
    return ", ".join(f"{n} {short.get(why, why)}" for why, n in trace.skipped_by.items())


def compare_all(q: bool) -> list[dict]:
    comps = []
    gang = gang_workload(jobs=400 if q else 1200, cluster_gpus=1024, load=1.5, seed=7)
    comps.append(compare("Synthetic gangs (Philly/Helios/Acme-shaped), load 1.5", "superpod:sus=4", gang,
                         {"fabric, no preemption": fabric_policy(preemption=False),
                          "fabric, compact-wait 4 h": fabric_policy(compact_wait_s=4 * 3600.0)}))
    gang8 = gang_workload(jobs=400 if q else 1200, cluster_gpus=1024, load=1.5, seed=8)
    comps.append(compare("The same generator with another seed (8), load 1.5", "superpod:sus=4", gang8,
                         tag="superpod:sus=4, seed 8"))
    print("superpod done", flush=True)
    nvl = gang_workload(jobs=300 if q else 1000, cluster_gpus=576, gpus_per_host=4, load=1.3, seed=7)
    comps.append(compare("Synthetic gangs on NVL72, load 1.3", "nvl72:racks=8", nvl))
    print("nvl72 done", flush=True)
    openb = load_trace(f"openb:{OPENB}")
    jobs = list(openb)[:1500] if q else list(openb)
    comps.append(compare(f"Alibaba openb trace ({openb.skipped} pods skipped: {_skips(openb)})",
                         "leaf-spine:hosts=4,hosts_per_leaf=2", jobs))
    return comps


if __name__ == "__main__":
    main()
