"""Run every benchmark (``python -m benchmarks --all``) or the named ones, one after another.

Each benchmark is ``benchmarks/<name>/__main__.py`` and writes its own section of
docs/benchmarks.md. They run sequentially in fresh processes so they do not disturb each other.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


#: run only on a lent GPU machine (docs/benchmarks.md, "When a GPU is lent"), never by --all
GPU_ONLY = frozenset({"gpu_check"})


EPILOG = ("Run this way, a benchmark takes its full size and rewrites its section of docs/benchmarks.md. "
          "Each takes its own options (python -m benchmarks.NAME --help), most a smaller run and one that "
          "leaves the docs alone; a smoke run of the simulator: "
          "python -m benchmarks.scheduler --quick --no-write (well under a minute).")


def available() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("*/__main__.py") if p.parent.name not in GPU_ONLY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, epilog=EPILOG)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (of: {', '.join(available())})")
    parser.add_argument("--all", action="store_true", help="run every benchmark")
    args = parser.parse_args(argv)
    names = available() if args.all else args.names
    unknown = sorted(set(names) - set(available()))
    if unknown or not names:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}" if unknown else "name benchmarks or give --all")
    failed = []
    for name in names:
        print(f"== benchmarks.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
