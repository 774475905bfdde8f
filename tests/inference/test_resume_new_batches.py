"""One --output fed a new batch file per run (the earlier batch removed from the input): the summary's
"skipped as already done" and the --max-rejected share count this input's lines, not the journal."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.inference import VirtualClock, run_job
from fabric_hpc.inference.pipeline import PipelineOptions
from fabric_hpc.inference.simulated import CostModel
from tests.real import require_real

from .builders import make_config, random_items

BIN = Path(sys.executable).parent
MPIEXEC, FABRIC = BIN / "mpiexec", BIN / "fabric"
REPO = Path(__file__).resolve().parents[2]
BAD = json.dumps({"id": "bad", "prompt": [], "max_new_tokens": 1})


def _batch(path: Path, items: list[dict], extra: list[str] = ()) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items) + "".join(x + "\n" for x in extra))
    return path


def _cli(*args: str, ranks: int = 0) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    cmd = [str(MPIEXEC), "-n", str(ranks), str(FABRIC)] if ranks else [sys.executable, "-m", "fabric_hpc.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=180)


def test_resumed_counts_only_the_inputs_items(tmp_path: Path) -> None:
    """Before: the second run said resumed 40 (the journal) though none of its 10 items had run."""
    cfg, spool, out = make_config(tmp_path), tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    items = random_items(50, seed=3)
    _batch(spool / "b1.jsonl", items[:40])
    opts = {"engine_options": {"clock": VirtualClock()}, "options": PipelineOptions(chunk_size=8)}
    assert run_job(cfg, str(spool), out, **opts)["resumed"] == 0
    (spool / "b1.jsonl").unlink()
    _batch(spool / "b2.jsonl", items[35:])  # 5 done before, 10 new
    res = run_job(cfg, str(spool), out, **opts)
    assert res["resumed"] == 5 and res["items_done_all_ranks"] == 10


@pytest.mark.parametrize("ranks", [0, 2])
def test_max_rejected_share_is_of_this_input(tmp_path: Path, ranks: int) -> None:
    """Before: 2 bad lines of 10 (20 %) passed the default 10 % once the output held 70 earlier
    results whose lines were no longer in the input (the share was taken over 80)."""
    if ranks:
        require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    cfg, out = make_config(tmp_path), tmp_path / "out"
    items = random_items(78, seed=5)
    first = _batch(tmp_path / "first.jsonl", items[:70])
    args = ["--engine-config", str(cfg), "--output", str(out), "--no-progress", "--json"]
    assert _cli("infer", "run", "--input", str(first), *args, ranks=ranks).returncode == 0
    _batch(first, items[70:], [BAD.replace("bad", "bad1"), BAD.replace("bad", "bad2")])  # same path
    r = _cli("infer", "run", "--input", str(first), *args, ranks=ranks)
    assert r.returncode == 3, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert "2 of 10 input lines (20.00%) were dead-lettered" in doc["error"], doc
    # the 8 good lines ran and are committed, as on a fresh output
    assert "the 8 others ran and are committed" in doc["error"]


SLOW = CostModel(base_s=4e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
PROGRESS = re.compile(r"progress: done ([\d,]+) \(\+([\d,]+) resumed\)")


def test_progress_under_mpi_counts_the_whole_job(tmp_path: Path) -> None:
    """Before: under mpiexec -n 3 the line said rank 0's count and rate (a third of the job's)
    beside the job's resumed count: `done 504 (+6,001 resumed) 119 items/s` of a job at 386/s."""
    require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    cfg, out = make_config(tmp_path, cost=SLOW), tmp_path / "out"
    # 1,800 items: the run lasts many progress intervals, so the last line comes near its end (with
    # 600, a fast run printed its last line at 179 while rank 0 alone did 200 by the end)
    spool = _batch(tmp_path / "in.jsonl", random_items(1800, seed=6, max_new=40))
    r = _cli("infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
             "--progress", "--progress-every", "0.5", "--json", ranks=3)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    share = doc["ranks"][0]["items_done"]
    seen = [int(m.group(1).replace(",", "")) for m in PROGRESS.finditer(r.stderr)]
    assert seen and max(seen) <= 1800, r.stderr
    assert max(seen) > share, (share, r.stderr)  # more than rank 0 alone ever did
