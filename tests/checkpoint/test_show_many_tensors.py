"""``fabric ckpt show`` of a checkpoint with thousands of tensors prints a plain listing (rich's
table layout took ~14 s of CPU for 20,000 tensors), with every tensor and the same columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from tests.checkpoint.builders import run_cli


def test_show_lists_every_tensor_plainly_past_the_table_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from fabric_hpc.cli import output
    state = {"model": {str(i): {"w": np.zeros((3, 2), np.float32), "b": np.zeros(5, np.int64)} for i in range(4)}}
    save(tmp_path, state, step=7)
    code, table_out, _ = run_cli(capsys, "ckpt", "show", str(tmp_path))
    assert code == 0 and "┃ tensor" in table_out  # a few tensors: the rich table, as before
    monkeypatch.setattr(output, "PLAIN_ROWS", 4)  # 8 tensors: past the limit
    code, out, _ = run_cli(capsys, "ckpt", "show", str(tmp_path))
    lines = out.splitlines()
    assert code == 0 and "step 7" in lines[0]
    start = next(i for i, line in enumerate(lines) if line.startswith("tensor"))
    assert lines[start].split() == ["tensor", "dtype", "shape", "split", "chunks", "size"]
    rows = [line.split("  ") for line in lines[start + 1:]]
    rows = [[c.strip() for c in r if c.strip()] for r in rows]
    assert rows == [[f"model/{i}/{n}", dt, shape, "1", size] for i in range(4)
                    for n, dt, shape, size in (("b", "int64", "[5]", "40 B"), ("w", "float32", "[3, 2]", "24 B"))]
    assert all("│" not in line and "┃" not in line for line in lines)
