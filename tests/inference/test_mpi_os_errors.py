"""Under real mpiexec a disk or permission error on one rank exits 5 with the single-rank message and
its fix (before: exit 1, a raw ``[Errno 28] ...`` line, MPI_Abort(..., 1), JSON ``"hint": null``), and
Ctrl-C says ``aborted`` as one rank does (before: ``error: rank 0: KeyboardInterrupt``)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .test_mpi import check_exactly_once, errors_by_rank, finish, job, launch, rank_pid  # noqa: F401

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

def _limit_rank_once_it_commits(proc: subprocess.Popen, out: Path, victim: int) -> None:
    """Once rank ``victim`` journalled its first chunk, cap its file size at 1 KiB (``prlimit``, as
    ``ulimit -f 1`` would: set before MPI_Init it would fail MPICH's shared memory): its next chunk
    write fails with EFBIG (Python ignores SIGXFSZ) -- an OSError on that rank alone."""
    journal = out / "journal" / f"rank-{victim:05d}.jsonl"
    t0, pid = time.monotonic(), None
    while proc.poll() is None and time.monotonic() - t0 < 30:
        pid = pid or rank_pid(proc.pid, victim)
        if pid and journal.is_file() and journal.stat().st_size:
            hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1024, hard))
            return
        time.sleep(0.01)
    pytest.fail(f"rank {victim} never committed a chunk")


def test_a_write_error_on_rank_0_exits_5_with_the_message_and_fix_of_one_rank(job: dict) -> None:
    out = job["tmp"] / "efbig0"
    proc = launch(job, out, 2)
    _limit_rank_once_it_commits(proc, out, 0)
    code, stdout, err = finish(proc)
    assert code == 5, err[-2000:]
    assert errors_by_rank(err, 2) == [1, 0], err[-2000:]
    assert "File too large" in err and "Errno" not in err and "fix: " in err, err[-2000:]
    doc = json.loads(stdout)
    assert doc["exit_code"] == 5 and doc["hint"] and "File too large" in doc["error"], stdout


def test_a_write_error_on_rank_1_exits_5_and_a_rerun_finishes(job: dict) -> None:
    out = job["tmp"] / "efbig1"
    proc = launch(job, out, 2)
    _limit_rank_once_it_commits(proc, out, 1)
    code, _, err = finish(proc)
    assert code == 5, err[-2000:]
    assert errors_by_rank(err, 2) == [0, 1] and "File too large" in err and "fix: " in err, err[-2000:]
    code, _, err = finish(launch(job, out, 2))
    assert code == 0, err[-2000:]
    check_exactly_once(job, out)


def test_ctrl_c_under_mpiexec_says_aborted(job: dict) -> None:
    out = job["tmp"] / "ctrl-c"
    proc = launch(job, out, 2)
    t0 = time.monotonic()
    journal = out / "journal" / "rank-00000.jsonl"
    while (proc.poll() is None and not (journal.is_file() and journal.stat().st_size)
           and time.monotonic() - t0 < 30):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
    code, stdout, err = finish(proc)
    if code == 0:
        pytest.skip("the run finished before the interrupt landed")
    assert code == 130, err[-2000:]
    assert "KeyboardInterrupt" not in err and "aborted" in err, err[-2000:]
