"""A base install has no torch: the checkpoint library paths that need it raise the one
missing-dependency error (an ExternalError naming the pip extra), never a raw ModuleNotFoundError."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.checkpoint import save

torch = pytest.importorskip("torch")  # the checkpoint is written with torch, then read without it

# runs with torch made unimportable (``sys.modules["torch"] = None``: ``import torch`` raises
# ModuleNotFoundError with name "torch", as on a machine without it)
_CHILD = r"""
import json, sys
sys.modules["torch"] = None
from fabric_hpc.checkpoint import open_checkpoint
from fabric_hpc.checkpoint.convert import convert
from fabric_hpc.errors import ExternalError
root, out = sys.argv[1], sys.argv[2]
ck = open_checkpoint(root)
calls = {
    "cast bf16 to float32": lambda: ck.read("w", dtype="float32"),
    "as torch": lambda: ck.read("x", as_torch=True),
    "convert": lambda: convert(root, out, {"dtype": "float32"}),
}
got = {}
for what, fn in calls.items():
    try:
        fn()
        got[what] = "no error"
    except ExternalError as exc:
        got[what] = ["ExternalError", str(exc), exc.hint]
    except Exception as exc:
        got[what] = [type(exc).__name__, str(exc)]
got["plain read"] = ck.read("x").tolist()
print(json.dumps(got))
"""


def test_library_paths_that_need_torch_name_the_extra(tmp_path: Path) -> None:
    import numpy as np

    save(tmp_path / "ck", {"w": torch.ones(2, 3, dtype=torch.bfloat16), "x": np.arange(3, dtype=np.float32)},
         step=1)
    res = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "ck"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["plain read"] == [0.0, 1.0, 2.0]  # what needs no torch still works
    for what in ("cast bf16 to float32", "as torch", "convert"):
        kind, message, hint = got[what]
        assert kind == "ExternalError", (what, got[what])
        assert "torch" in message and "not installed" in message, message
        assert hint == "pip install 'fabric-hpc[torch]'"
    assert not (tmp_path / "out").exists()  # the refused convert created nothing
