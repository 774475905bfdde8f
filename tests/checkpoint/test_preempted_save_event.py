"""``checkpoint.preempted_save`` carries structured fields (SRE report): ``result`` was the Python
repr of the SaveResult (``SaveResult(path=PosixPath(...), ...)``), which no reader can use, and
``job`` the string of ``SLURM_JOB_ID`` where the agent's events give job ids as integers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint.async_save import AsyncSaver
from fabric_hpc.checkpoint.preemption import PreemptionHandler
from fabric_hpc.checkpoint.writer import save

KEYS = {"ts", "event", "path", "step", "bytes", "seconds", "job", "signal", "requeue"}


def _preempted(save_fn, sig: int = signal.SIGUSR1) -> None:
    handler = PreemptionHandler.install()
    try:
        os.kill(os.getpid(), sig)
        assert handler.wait(5)
        assert handler.save_and_requeue(save_fn, requeue=False) is False
    finally:
        handler.uninstall()


def test_the_event_gives_the_saves_fields(tmp_path: Path, events, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    done = []
    _preempted(lambda: done.append(save(tmp_path, {"a": np.ones(4, dtype=np.float32)}, step=7)) or done[0])
    (event,) = [e for e in events if e["event"] == "checkpoint.preempted_save"]
    assert set(event) == KEYS, sorted(set(event) ^ KEYS)
    assert event["path"] == str(done[0].path) and event["step"] == 7
    assert event["bytes"] == done[0].nbytes == 16
    assert event["seconds"] >= 0 and event["job"] == 4242 and event["signal"] == "SIGUSR1"
    assert event["requeue"] is False
    assert "SaveResult" not in json.dumps(event) and "PosixPath" not in json.dumps(event)


def test_a_rank_that_saved_nothing_and_an_asynchronous_save(tmp_path: Path, events,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank other than 0 saves nothing (its save_fn returns None: slurm/trainer.py); an
    asynchronous save returns a handle, waited for: the event names the committed checkpoint.
    Outside Slurm ``job`` is null."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    _preempted(lambda: None, signal.SIGTERM)
    with AsyncSaver(tmp_path) as ckpt:
        _preempted(lambda: ckpt.save({"a": np.ones(2)}, step=3))
    first, second = [e for e in events if e["event"] == "checkpoint.preempted_save"]
    assert set(first) == set(second) == KEYS
    assert first["path"] is first["step"] is first["bytes"] is first["seconds"] is first["job"] is None
    assert first["signal"] == "SIGTERM"
    assert second["step"] == 3 and second["job"] is None
    assert second["path"] == str(tmp_path / "step-0000000003")
    assert second["bytes"] == 16 and second["seconds"] >= 0
