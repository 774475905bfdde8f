"""One prepared GPU check, sized for a 15-minute lease of one H200 (issue 16).

    python -m benchmarks.gpu_check --out DIR [--wheels .whl]   # on the lent GPU: <= 8 minutes
    python -m benchmarks.gpu_check --out DIR --tiny            # CPU rehearsal (CI): seconds
    python -m benchmarks.gpu_check --dry-run [--tiny]          # the plan: parts, budgets, sizes
    python -m benchmarks.gpu_check --fold DIR                  # after a GPU run: docs + fixtures

Runs the parts of ``plan.PARTS`` one after another, each in its own process stopped at its own
budget (``overran``: what it recorded so far is kept, the next part still runs), and rewrites
``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` after every part. Also written:
``DIR/gpu_check.log`` (every part's output), ``DIR/nvml-recording.json``, ``DIR/discovery.yaml``,
``DIR/discovery.facts.json`` and ``DIR/sysfs-snapshot.tar.gz``: seven files, inside the device
tool's eight. ``--wheels`` installs the carried wheels (``wheels.txt``) into the work folder
first. docs/benchmarks.md ("When a GPU is lent") has the exact device call.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.plan import KILL_GRACE_S, MIN_OPTIONAL_S, PARTS, TOTAL_BUDGET_S, Part, sizes

ROOT = Path(__file__).resolve().parents[2]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="output folder (created)")
    p.add_argument("--tiny", action="store_true", help="CPU rehearsal: tiny model, 1 GiB state")
    p.add_argument("--wheels", type=Path, help="folder of carried wheels to install first (.whl)")
    p.add_argument("--only", default="", help="comma list of parts to run (default: all)")
    p.add_argument("--total-budget", type=float, default=None,
                   help=f"seconds for the whole check (default {TOTAL_BUDGET_S:.0f}; sum of the "
                        "tiny budgets with --tiny); optional parts run only within it")
    p.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                   help="override one part's budget (repeatable)")
    p.add_argument("--work", type=Path, help="work folder (default: a new temporary one, removed)")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--fold", type=Path, metavar="DIR",
                   help="fold a GPU run's DIR into docs/benchmarks.md and tests/topology/fixtures")
    args = p.parse_args(argv)
    names = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = names - {q.name for q in PARTS}
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}; parts: "
                + ", ".join(q.name for q in PARTS))
    args.parts = [q for q in PARTS if not names or q.name in names]
    args.budgets = {}
    for item in args.budget:
        name, _, secs = item.partition("=")
        try:
            args.budgets[name] = float(secs)
        except ValueError:
            p.error(f"--budget {item!r}: give PART=SECONDS")
        if name not in {q.name for q in PARTS}:
            p.error(f"--budget {item!r}: no part {name!r}")
    if not (args.out or args.dry_run or args.fold):
        p.error("give --out DIR (or --dry-run, or --fold DIR)")
    if args.total_budget is None:
        args.total_budget = sum(q.tiny_budget_s for q in PARTS) if args.tiny else TOTAL_BUDGET_S
    return args


def _budget(q: Part, args: argparse.Namespace) -> float:
    return args.budgets.get(q.name, q.tiny_budget_s if args.tiny else q.budget_s)


def plan_text(args: argparse.Namespace) -> str:
    mode = "tiny (CPU rehearsal)" if args.tiny else "full (one H200)"
    lines = [f"GPU check plan, {mode}; total budget {args.total_budget:.0f} s; sizes {sizes(args.tiny)}"]
    fixed = 0.0
    for q in args.parts:
        if q.optional:
            note = ("not run with --tiny" if args.tiny else
                    f"runs only if >= {MIN_OPTIONAL_S:.0f} s of the total are left")
            lines.append(f"  {q.name:<15} <={args.budgets.get(q.name, q.budget_s):6.0f} s  {q.what} ({note})")
        else:
            fixed += _budget(q, args)
            lines.append(f"  {q.name:<15} {_budget(q, args):8.0f} s  {q.what}")
    lines.append(f"  fixed parts add up to {fixed:.0f} s")
    return "\n".join(lines)


def _run_part(q: Part, budget: float, args: argparse.Namespace, work: Path, env: dict[str, str],
              log: Any) -> dict[str, Any]:
    from benchmarks.gpu_check.part import part_file

    cmd = [sys.executable, "-m", "benchmarks.gpu_check.part", q.name, "--out", str(args.out),
           "--work", str(work)] + (["--tiny"] if args.tiny else [])
    log.write(f"\n==== {q.name} (budget {budget:.0f} s): {' '.join(cmd)}\n")
    log.flush()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: mpiexec included
    try:
        code: int | None = proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        code = None
        _kill_group(proc)
    entry: dict[str, Any] = {"budget_s": budget, "elapsed_s": time.monotonic() - t0,
                             "exit_code": proc.returncode}
    result = _read_json(part_file(work, q.name))
    entry["result"] = result
    if code is None:
        entry["status"] = "overran"
    elif code == 0 and result.get("status") == "ok":
        entry["status"] = "skipped" if "skipped" in result else "ok"
    else:
        entry["status"] = "failed"
        entry["error"] = result.get("error") or f"exit code {code} (see gpu_check.log)"
    return entry


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _environment(env: dict[str, str]) -> dict[str, Any]:
    """Versions of the packages the check uses, read without importing them."""
    import importlib.metadata as md
    import platform

    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count(), "pythonpath": env.get("PYTHONPATH", "")}
    for dist in ("torch", "transformers", "numpy", "mpi4py", "nvidia-ml-py", "pydantic",
                 "google-crc32c", "networkx"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    paths = [str(ROOT)]
    if args.wheels:
        from benchmarks.gpu_check.wheels import install

        site = install(args.wheels.resolve(), work / "site")
        sys.path.insert(0, str(site))
        paths.insert(0, str(site))
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
            "PYTHONUNBUFFERED": "1"}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.dry_run:
        print(plan_text(args))
        return 0
    if args.fold:
        from benchmarks.gpu_check.report import fold

        return fold(args.fold)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="fabric-gpu-check-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if not args.keep_work and not args.work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    env = _env(args, work)
    from benchmarks.gpu_check.report import new_document, write_outputs

    print(plan_text(args), flush=True)
    doc = new_document(args, _environment(env))
    t_start = time.monotonic()
    with open(args.out / "gpu_check.log", "a", encoding="utf-8") as log:
        for q in args.parts:
            budget = _budget(q, args)
            left = args.total_budget - (time.monotonic() - t_start)
            if q.optional and (args.tiny or left < MIN_OPTIONAL_S):
                why = "not run with --tiny" if args.tiny else f"only {max(left, 0):.0f} s of the total left"
                doc["parts"][q.name] = {"status": "skipped", "budget_s": 0, "elapsed_s": 0,
                                        "result": {"skipped": why}}
            else:
                budget = float(int(min(budget, left))) if q.optional else budget
                doc["parts"][q.name] = _run_part(q, budget, args, work, env, log)
            got = doc["parts"][q.name]
            print(f"[{time.monotonic() - t_start:6.1f} s] {q.name}: {got['status']} "
                  f"({got['elapsed_s']:.1f} of {got['budget_s']:g} s)"
                  + (f": {got['error']}" if got.get("error") else ""), flush=True)
            write_outputs(doc, args.out, time.monotonic() - t_start)
    from benchmarks.gpu_check.part import third_party_modules

    doc["runner_modules"] = third_party_modules()
    doc = write_outputs(doc, args.out, time.monotonic() - t_start, final=True)
    print((args.out / "gpu_check.md").read_text(), flush=True)
    bad = [n for n, p in doc["parts"].items() if p["status"] in ("failed", "overran")]
    if doc.get("schema_errors"):
        print("schema errors: " + "; ".join(doc["schema_errors"]), file=sys.stderr)
    return 1 if bad or doc.get("schema_errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())
