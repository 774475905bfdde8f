"""Fresh-process restore memory probe: `python -m benchmarks.checkpoint.rss_probe CKPT_ROOT`.
Prints JSON: peak RSS growth during restore (VmHWM after - VmRSS before) and the state bytes."""

from __future__ import annotations

import json
import sys
import time

import torch  # noqa: F401  (imported before the baseline, as in a training job)

from benchmarks.checkpoint.methods import drop_caches, peak_rss, reset_peak_rss
from fabric_hpc.checkpoint import open_checkpoint, restore


def main() -> None:
    root = sys.argv[1]
    size = open_checkpoint(root).manifest.nbytes
    drop_caches()
    base = reset_peak_rss()
    t0 = time.perf_counter()
    state = restore(root, as_torch=True)
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak_growth": peak_rss() - base, "state_bytes": size, "seconds": seconds,
                      "tensors": len(state)}))


if __name__ == "__main__":
    main()
