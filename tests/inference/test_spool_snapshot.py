"""Live producers and poisoned items under real mpiexec: one spool snapshot per run, no stops."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fabric_hpc.inference import merge_job
from tests.real import require_real

from .builders import make_config, random_items, read_results, write_spool

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

BIN = Path(sys.executable).parent
MPIEXEC, FABRIC = BIN / "mpiexec", BIN / "fabric"


def run(cfg: Path, spool: Path, out: Path, n: int, timeout: float = 60) -> tuple[int, str, str]:
    require_real("mpi", MPIEXEC.exists() and FABRIC.exists(), f"{MPIEXEC} or {FABRIC} missing")
    cmd = [str(MPIEXEC), "-n", str(n), str(FABRIC), "infer", "run", "--engine-config", str(cfg),
           "--input", str(spool), "--output", str(out), "--chunk-size", "8", "--no-progress", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, err = proc.communicate()
        pytest.fail(f"mpiexec did not finish in {timeout} s: {err[-2000:]}")
    return proc.returncode, stdout, err


class Producer(threading.Thread):
    """Submit-and-walk-away: write a small file under a temporary name, rename it to *.jsonl."""

    def __init__(self, spool: Path, prefix: str, every_s: float = 0.005, per_file: int = 3) -> None:
        super().__init__(daemon=True)
        self.spool, self.prefix, self.every_s, self.per_file = spool, prefix, every_s, per_file
        self.ids: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            items = [{"id": f"{self.prefix}-{k}-{j}", "prompt": [k % 97 + 1, j + 1], "max_new_tokens": 2}
                     for j in range(self.per_file)]
            tmp = self.spool / f".{self.prefix}-{k:06d}.tmp"
            tmp.write_text("".join(json.dumps(it) + "\n" for it in items))
            tmp.rename(self.spool / f"{self.prefix}-{k:06d}.jsonl")
            self.ids += [it["id"] for it in items]
            k += 1
            time.sleep(self.every_s)


def test_poisoned_items_with_two_ranks_finish_and_merge(tmp_path: Path) -> None:
    items = random_items(60, seed=7)
    poison = ["[" * 100_000, '{"id": "p", "prompt": [' + "9" * 30 + '], "max_new_tokens": 1}',
              '{"id": "q", "prompt": [1], "max_new_tokens": ' + "9" * 5000 + "}", "\xff\xfe"]
    spool = write_spool(tmp_path, items, extra_lines=poison)
    out = tmp_path / "out"
    code, stdout, err = run(make_config(tmp_path), spool, out, 2)
    assert code == 0, err[-2000:]
    assert json.loads(stdout)["items_done_all_ranks"] == 60
    assert len(list((out / "journal").glob("rank-*.jsonl"))) == 2   # both ranks worked
    dead = [json.loads(x) for x in (out / "dead-letter.jsonl").read_text().splitlines()]
    assert len(dead) == 4 and all(len(d["reason"]) <= 500 for d in dead)
    assert merge_job(out)["items"] == 60


def test_live_producer_every_id_exactly_once(tmp_path: Path) -> None:
    """A producer renames small files into the spool every ~5 ms while 2-4 ranks start: each run
    merges (it checks its own snapshot), and after a rerun every produced id is there once (6 trials)."""
    rng = random.Random(1704)
    cfg = make_config(tmp_path)
    late = 0
    for trial in range(6):
        spool = tmp_path / f"spool-{trial}"
        spool.mkdir()
        out = tmp_path / f"out-{trial}"
        producer = Producer(spool, f"t{trial}")
        producer.start()
        try:
            code, _, err = run(cfg, spool, out, rng.randint(2, 4))
        finally:
            producer.stop.set()
            producer.join()
        assert code == 0, f"trial {trial}: {err[-2000:]}"
        first = merge_job(out)["items"]                   # the first run's snapshot, exactly once
        assert 0 < first <= len(producer.ids)
        late += first < len(producer.ids)                 # files arrived after the snapshot
        code, _, err = run(cfg, spool, out, rng.randint(2, 4))   # files that came later
        assert code == 0, f"trial {trial} rerun: {err[-2000:]}"
        merge_job(out)
        got = [r["id"] for r in read_results(out)]
        assert len(got) == len(set(got)) and set(got) == set(producer.ids), f"trial {trial}"
    assert late >= 3, f"only {late} of 6 trials had files arriving during the run"
