"""Record this host's NVML answers into the fixture format (run on a GPU machine, from the repo root):

    python3 tests/topology/record_nvml.py tests/topology/fixtures/nvml-<host>.json "H100 lent machine"

Needs only Python 3 and nvidia-ml-py (pynvml): it loads fabric_hpc/topology/nvml_recording.py by path,
so it runs where fabric_hpc's other dependencies are not installed. Replay the result in tests with
``discover(nvml_recording=PATH)``; keep a copy of that host's sysfs facts with
``discover(...).write(...)`` if fabric_hpc is installed there.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "fabric_hpc" / "topology" / "nvml_recording.py"


def main() -> int:
    spec = importlib.util.spec_from_file_location("nvml_recording", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
