"""SRE probe: a training script with ``logging.basicConfig(level=logging.INFO)`` saw
``INFO:fabric_hpc.events:checkpoint.saved`` and none of the event's fields (they are in ``record.event``),
and no page said how to get the JSON lines the CLI writes. docs/events.md now has the recipe; this runs it,
as the page spells it, in a program that saves a checkpoint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_recipe_ships_whole_events(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "events.md").read_text()
    section = doc[doc.index("**In your own program**"):]
    recipe = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    program = recipe + (
        "\nimport numpy as np\nfrom fabric_hpc.checkpoint import save\n"
        f"save({str(tmp_path / 'ckpt')!r}, {{'w': np.arange(4.0)}}, step=3)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    saved = [e for e in events if e["event"] == "checkpoint.saved"]
    assert len(saved) == 1 and saved[0]["step"] == 3 and saved[0]["path"], done.stderr
    assert isinstance(saved[0]["ts"], float)
