"""Input checks a run makes before it commits anything: stdin lines bounded like spool lines, an item
changed since its result was committed refused up front on one rank, ranks with different engines
refused (review of the batch-inference harness)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.inference import (DeadLetter, EngineLimits, PipelineOptions, VirtualClock, committed_ids,
                                  run_job)
from fabric_hpc.inference import spool
from fabric_hpc.inference.intake import InputChanged, read_items
from tests.real import require_real

from .builders import SMALL, make_config, random_items, write_spool

REPO = Path(__file__).resolve().parents[2]


def test_a_stdin_line_over_the_limit_is_cut_and_dead_lettered(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``--input -`` held and parsed a line of any length (a 2 GB line: GBs of memory); the docs
    promise a longer line is cut and rejected, as spool lines are."""
    monkeypatch.setattr(spool, "MAX_LINE_BYTES", 1024)
    good = [json.dumps({"id": f"g{i}", "prompt": [1, 2], "max_new_tokens": 1}) for i in range(2)]
    long = json.dumps({"id": "big", "prompt": [1] * 5000, "max_new_tokens": 1})
    stream = io.BytesIO(f"{good[0]}\n{long}\n{good[1]}\n".encode())
    lines = list(spool.stream_lines(stream))
    assert [n for _, n, _ in lines] == [1, 2, 3] and len(lines[1][2]) <= 1025  # cut, never held whole
    dead = DeadLetter(tmp_path / "dl.jsonl")
    items = list(read_items(lines, limits=SMALL, dead_letter=dead))
    dead.close()
    assert [it.id for it in items] == ["g0", "g1"]
    assert "line longer than" in json.loads((tmp_path / "dl.jsonl").read_text())["reason"]


def _run(cfg: Path, spool_dir: Path, out: Path) -> dict:
    return run_job(cfg, str(spool_dir), out, engine_options={"clock": VirtualClock()},
                   options=PipelineOptions(chunk_size=8))


def test_one_rank_refuses_a_changed_item_before_committing_new_work(tmp_path: Path) -> None:
    """On one rank the change was found only at the end of the input, after every new item of the
    changed input was computed and committed into the old output directory."""
    first = random_items(16, seed=4)
    spool_dir, cfg, out = write_spool(tmp_path, first, files=1), make_config(tmp_path), tmp_path / "out"
    _run(cfg, spool_dir, out)
    (spool_dir / "part-000.jsonl").unlink()  # batch A finished and removed; batch B reuses an id
    changed = {**first[0], "max_new_tokens": first[0]["max_new_tokens"] % 40 + 1}
    batch = [changed] + random_items(200, seed=6, prefix="j")
    (spool_dir / "batch-b.jsonl").write_text("".join(json.dumps(x) + "\n" for x in batch))
    with pytest.raises(InputChanged, match="'i0' .*changed"):
        _run(cfg, spool_dir, out)
    assert committed_ids(out) == {it["id"] for it in first}


@pytest.mark.mpi
@pytest.mark.slow
def test_ranks_with_different_engine_limits_are_refused(tmp_path: Path) -> None:
    """Ranks compared only their tokenizers: a rank whose engine has other limits (another build on
    some nodes) accepted other items and shared out another list, so items were lost or run twice."""
    mpiexec, fabric = Path(sys.executable).parent / "mpiexec", Path(sys.executable).parent / "fabric"
    require_real("mpi", mpiexec.exists() and fabric.exists(), f"{mpiexec} or {fabric} missing")
    other = EngineLimits(max_batch_size=16, max_num_tokens=1024, max_input_len=64, max_seq_len=192,
                         kv_capacity_tokens=2048)
    cfgs = [make_config(tmp_path, SMALL, name="a"), make_config(tmp_path, other, name="b")]
    spool_dir = write_spool(tmp_path, random_items(16, seed=5), files=1)
    args = [[str(fabric), "infer", "run", "--engine-config", str(cfg), "--input", str(spool_dir),
             "--output", str(tmp_path / "out"), "--no-progress"] for cfg in cfgs]
    cmd = [str(mpiexec), "-n", "1", *args[0], ":", "-n", "1", *args[1]]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
                          timeout=240)
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "ranks run different engines" in errors[0], proc.stderr[-2000:]
    assert "rank 0" in errors[0] and "max_input_len=128" in errors[0] and "max_input_len=64" in errors[0]
    assert not (tmp_path / "out" / "journal").exists()
