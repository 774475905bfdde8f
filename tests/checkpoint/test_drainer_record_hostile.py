"""A tiered save's staging directory whose ``.drainer-I`` record is deeply nested JSON (within the
64 KiB read) is an "unknown writer" leftover, as any unreadable record is: `fabric ckpt list` (and
prune) were a RecursionError traceback. Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

import numpy as np

from fabric_hpc.checkpoint import save
from fabric_hpc.checkpoint.health import DRAINER_PREFIX, leftovers
from fabric_hpc.cli.main import main


def test_a_deeply_nested_drainer_record_is_an_unknown_writer(tmp_path, capsys):
    root = tmp_path / "ck"
    save(root, {"w": np.zeros(4, dtype=np.float32)}, step=5)
    staging = root / ".drain-step-0000000009-abc"
    staging.mkdir()
    (staging / f"{DRAINER_PREFIX}0").write_text("[" * 30_000 + "]" * 30_000)
    found = [x for x in leftovers(root) if x.path == staging]
    assert len(found) == 1 and found[0].state == "unknown writer"
    assert main(["ckpt", "list", str(root)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert main(["ckpt", "prune", str(root), "--keep-last", "1"]) == 0
    assert staging.exists()  # an unknown writer's staging directory is never removed
