"""SRE probe: a path whose name is not UTF-8 (``$'ck\\xff'``, legal on Linux) printed on stdout ended
``fabric`` in a traceback (exit 1, UnicodeEncodeError) wherever Python's stdout is strict UTF-8, as it is
under ``LANG=en_US.UTF-8`` (emulated here with ``PYTHONIOENCODING=utf-8:strict``; the C.UTF-8 locale of
the test machine escapes by itself). stderr's human lines and the JSON events already escaped it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_name_that_is_not_utf8_is_printed_escaped_not_a_traceback(tmp_path: Path) -> None:
    odd = tmp_path / os.fsdecode(b"ck\xff")
    odd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8:strict"}
    done = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "ckpt", "list", str(odd)],
                          env=env, capture_output=True, timeout=120, check=False)
    err = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and done.returncode != 1, err[-2000:]
    out = done.stdout.decode("utf-8")  # strict: what the terminal gets is UTF-8
    assert "ck\\udcff" in out or done.returncode != 0, out
