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


def main() -> None:
    src, out, recipe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    convert(src, out + "-warm", {"drop": [".*big.*"], **recipe})  # load lazily imported code first
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    base = _status("VmRSS")
    report = convert(src, out, recipe)
    print(json.dumps({"peak_added": _status("VmHWM") - base, "parallel": report.parallel}))


if __name__ == "__main__":
    main()
