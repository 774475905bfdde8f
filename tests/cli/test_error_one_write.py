"""A failure's ``error:`` and ``fix:`` lines go out in one write: under srun, a rank whose step was
being killed (another rank had failed) got its ``error:`` line through and lost the ``fix:`` line
(seen in CI: the MPI-library case of infer_batch on Slurm 22.05)."""

from __future__ import annotations

import io
import sys

from fabric_hpc.cli.main import main


class Writes(io.BytesIO):
    """The bytes below stderr's text layer, a chunk per write (what a pipe to srun receives)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    def write(self, b) -> int:  # type: ignore[override]
        self.calls.append(bytes(b))
        return super().write(b)


def test_error_and_fix_are_one_write(monkeypatch, tmp_path):
    raw = Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", write_through=True,
                                                        line_buffering=True))
    code = main(["topology", "show", str(tmp_path / "missing.yaml")])
    assert code != 0
    both = [c for c in raw.calls if b"error: " in c]
    assert len(both) == 1 and b"  fix: " in both[0], raw.calls
