"""One part of the GPU check, in its own process (so the runner can stop it at its budget):

    python -m benchmarks.gpu_check.part NAME --out OUT --work WORK [--tiny]

The part records its results in ``WORK/parts/NAME.json`` as it goes (rewritten atomically after
every step), so a part killed at its budget still leaves what it measured before.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.plan import PARTS, sizes

RUNNERS = {"discovery": "device:discovery", "ceilings": "device:ceilings",
           "baseline": "inference:baseline", "fabric_1rank": "inference:fabric_1rank",
           "fabric_2ranks": "inference:fabric_2ranks", "eager_decode": "inference:eager_decode",
           "fabric_4ranks": "inference:fabric_4ranks",
           "checkpoint": "checkpoint:checkpoint", "profile_steps": "profile:profile_steps",
           "prefill_probe": "prefill_probe:prefill_probe", "sdpa_cudnn": "inference:sdpa_cudnn"}


class Recorder:
    """A part's result document, rewritten atomically on every :meth:`set`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        path.parent.mkdir(parents=True, exist_ok=True)

    def set(self, **values: Any) -> None:
        from fabric_hpc.atomic import write_atomic

        self.data.update(values)
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str).encode())


@dataclass
class Ctx:
    out: Path
    work: Path
    tiny: bool
    size: dict[str, Any]


def part_file(work: Path, name: str) -> Path:
    return work / "parts" / f"{name}.json"


def third_party_modules() -> list[str]:
    """Top-level modules this process imported that are neither stdlib nor private."""
    tops = {k.split(".")[0] for k in list(sys.modules)}
    return sorted(m for m in tops if m not in sys.stdlib_module_names and not m.startswith("_")
                  and m not in ("benchmarks", "fabric_hpc"))


def _require_cuda() -> None:
    """The full-size parts need the GPU: without one they would crawl to their budgets on the CPU."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch: the full check needs the GPU "
                           "(on a CPU, rehearse with --tiny)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check.part")
    ap.add_argument("name", choices=[p.name for p in PARTS])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    # the runner stops an overrunning part with SIGTERM: unwind (finally blocks, the record)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped at its budget (SIGTERM)"))
    rec = Recorder(part_file(args.work, args.name))
    rec.set(status="running", phase="start", started=time.time())
    module, fn = RUNNERS[args.name].split(":")
    ctx = Ctx(args.out, args.work, args.tiny, dict(sizes(args.tiny)))
    try:
        if not args.tiny and args.name != "discovery":
            _require_cuda()
        getattr(importlib.import_module(f"benchmarks.gpu_check.{module}"), fn)(rec, ctx)
    except BaseException as exc:  # noqa: BLE001 - recorded for the report, then the exit code says it
        rec.set(status="failed", error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc()[-4000:], modules=third_party_modules())
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        return 1
    rec.set(status="ok", phase="done", modules=third_party_modules())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
