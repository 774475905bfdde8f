"""A FIFO where a checkpoint root or local tier holds a small JSON file (probe 7, the audit after the
`fabric slurm why` FIFO hang): a drain's `.drainer-N` record (read by `fabric ckpt list/prune`'s leftovers)
and a local part's `part.json` (read by the tiered drain) were read with a blocking open. They are opened
without blocking now: the drain is of an "unknown writer", the part file an error naming it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.child import run_unblocked


def _in_child(code: str, where: Path) -> str:
    return run_unblocked(code, d=where)


def test_a_fifo_drainer_record_is_an_unknown_writer(tmp_path: Path) -> None:
    staging = tmp_path / ".drain-step-0000000005-abc"
    staging.mkdir()
    os.mkfifo(staging / ".drainer-0")
    out = _in_child("from fabric_hpc.checkpoint.health import leftovers\n"
                    "print([l.state for l in leftovers(d)])", tmp_path)
    assert out == "['unknown writer']"


def test_a_fifo_part_file_is_refused(tmp_path: Path) -> None:
    part = tmp_path / "part-step-0000000005"
    part.mkdir()
    os.mkfifo(part / "part.json")
    out = _in_child("from fabric_hpc.checkpoint.tiers import local_parts\ntry:\n    local_parts(d)\n"
                    "except OSError as exc:\n    print(type(exc).__name__, exc)", tmp_path)
    assert out.startswith("UnsafeFileError") and "not a regular file" in out, out
