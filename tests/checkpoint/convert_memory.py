"""Run one convert and print the peak resident memory it added (VmHWM after clear_refs), in
bytes; run as a subprocess by tests/checkpoint/test_convert_memory.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch  # noqa: F401  (imported before measuring: its own footprint is not the convert's)

from fabric_hpc.checkpoint.convert import convert


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _warm_up(src: str, out: str, recipe: dict) -> None:
    """Load the lazily imported code first: the same recipe on a tiny copy of the source (same
    names, every dimension /256), so the measured convert's peak is its own."""
    import numpy as np

    from fabric_hpc.checkpoint import open_checkpoint, save
    ck = open_checkpoint(src)
    tiny = {n: np.ones([max(1, d // 256) for d in ck.entry(n).shape], np.float32) for n in ck.names}
    save(out + "-warmsrc", tiny, step=1)
    convert(out + "-warmsrc", out + "-warm", recipe)


def main() -> None:
    src, out, recipe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    _warm_up(src, out, recipe)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    base = _status("VmRSS")
    report = convert(src, out, recipe)
    print(json.dumps({"peak_added": _status("VmHWM") - base, "parallel": report.parallel}))


if __name__ == "__main__":
    main()
