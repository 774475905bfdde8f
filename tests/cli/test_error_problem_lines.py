"""An error that lists several problems prints a problem per line (docs/topology.md: "one line per
problem"); since the human lines escape control characters (test_event_stream_lines.py), the problems
came out as one line joined by a literal ``\\n``. The lines after the first are indented under it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENTRY = "import sys; from fabric_hpc.cli.main import main; sys.exit(main())"
SPEC = """fabric: 1
name: bad
host_types:
  t: {gpus: 4, gpu_model: H100, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 8, memory_gb: 100,
      nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 50}
hosts:
  - {names: 'a[1-2]', type: t}
  - {names: 'b[1-2]', type: nope}
  - {names: 'c[1-2]', type: nope2}
"""


def test_two_bad_host_types_are_two_lines(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC)
    res = subprocess.run([sys.executable, "-c", ENTRY, "topology", "show", str(spec)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr
    lines = res.stderr.splitlines()
    assert "\\n" not in res.stderr, res.stderr
    assert lines[0].startswith(f"error: {spec}:8: hosts.1.type") and "nope" in lines[0], lines
    assert lines[1].startswith(f"       {spec}:9: hosts.2.type") and "nope2" in lines[1], lines
    assert lines[-1].startswith("  fix: "), lines
