"""SIGTERM to one rank of a multi-rank run under real mpiexec: one line, exit 143, every rank gone.

Before: the signalled rank's teardown raised IndexError on the empty message of ``Terminated()``
(``str(exc).splitlines()[0]``), printed a traceback, exited 1 -- and under mpiexec never exited
at all (its Python exit ran MPI_Finalize, waiting for a peer that waited for it)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fabric_hpc.inference.mpi import first_line

from .test_mpi import check_exactly_once, finish, job, launch, processes_mentioning, rank_pid  # noqa: F401

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def test_first_line_of_an_empty_message_is_the_type_name() -> None:
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert first_line(RuntimeError("\n\n")) == "RuntimeError"
    assert first_line(RuntimeError("disk full\nat chunk 3")) == "disk full"
    assert len(first_line(RuntimeError("x" * 900))) == 500


def _sigterm_rank(job: dict, name: str, n: int, victim: int) -> tuple[int, str, float]:
    out = job["tmp"] / name
    proc = launch(job, out, n)
    journal = out / "journal" / f"rank-{victim:05d}.jsonl"
    deadline = time.monotonic() + 30
    pid = None
    while time.monotonic() < deadline and proc.poll() is None:
        pid = rank_pid(proc.pid, victim) or pid
        if pid and journal.is_file() and journal.stat().st_size:  # mid-run: it has committed work
            break
        time.sleep(0.02)
    assert pid and proc.poll() is None, "the run ended before the signal could be sent"
    os.kill(pid, signal.SIGTERM)
    signalled = time.monotonic()
    code, _, err = finish(proc, timeout=30)
    took = time.monotonic() - signalled
    while processes_mentioning(str(out)) and time.monotonic() < signalled + 10:
        time.sleep(0.05)
    assert not processes_mentioning(str(out)), f"a rank outlived the teardown: {err[-2000:]}"
    return code, err, took


@pytest.mark.parametrize("victim", [1, 0])
def test_sigterm_to_one_rank_exits_143_with_one_line(job: dict, victim: int) -> None:
    code, err, took = _sigterm_rank(job, f"sigterm-{victim}", 2, victim)
    assert code == 143, err[-3000:]
    assert "Traceback" not in err and "IndexError" not in err, err[-3000:]
    assert err.count(f"error: rank {victim}: terminated (SIGTERM)") == 1, err[-3000:]
    assert err.count("error: rank") == 1, err[-3000:]  # the peer only acknowledged
    assert took < 10.0, f"teardown took {took:.1f} s"
    out = job["tmp"] / f"sigterm-{victim}"
    code, _, err = finish(launch(job, out, 2))  # journals intact: the rerun resumes, exactly once
    assert code == 0, err[-2000:]
    check_exactly_once(job, out)
