"""Run a snippet of Python in a child process that must not block (a FIFO where a file should be): the
child is killed after 30 s and the test fails naming the snippet. The child imports this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_unblocked(code: str, **paths: Path) -> str:
    """``code`` with each of ``paths`` bound to its name (a ``Path``); its stdout, stripped."""
    head = "from pathlib import Path\n" + "".join(f"{k} = Path({str(v)!r})\n" for k, v in paths.items())
    try:
        proc = subprocess.run([sys.executable, "-c", head + code], capture_output=True, text=True, timeout=30,
                              env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"blocked (a FIFO?): {code!r}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
