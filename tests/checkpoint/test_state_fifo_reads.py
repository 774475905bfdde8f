"""A FIFO where a checkpoint root or local tier holds a small JSON file (probe 7, the audit after the
`fabric slurm why` FIFO hang): a drain's `.drainer-N` record (read by `fabric ckpt list/prune`'s leftovers)
and a local part's `part.json` (read by the tiered drain) were read with a blocking open. They are opened
without blocking now: the drain is of an "unknown writer", the part file a damaged part left out."""

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


def test_a_fifo_part_file_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """Read without blocking, and (since the damaged-part rule) left out of the listing with a
    ``checkpoint.part_damaged`` warning naming the problem (tests/checkpoint/test_damaged_part_file.py)."""
    part = tmp_path / "part-step-0000000005"
    part.mkdir()
    os.mkfifo(part / "part.json")
    out = _in_child("import logging\nfrom fabric_hpc.checkpoint.tiers import local_parts\n"
                    "from fabric_hpc.events import LOGGER_NAME\n"
                    "got = []\nh = logging.Handler()\nh.emit = lambda r: got.append(r.event)\n"
                    "log = logging.getLogger(LOGGER_NAME)\nlog.addHandler(h)\nlog.setLevel(logging.INFO)\n"
                    "parts = local_parts(d)\n"
                    "print(len(parts), [e['problem'] for e in got if e['event'] == 'checkpoint.part_damaged'])",
                    tmp_path)
    assert out.startswith("0 [") and "not a regular file" in out, out
