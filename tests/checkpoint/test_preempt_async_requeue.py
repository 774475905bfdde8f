"""``save_and_requeue`` with an asynchronous save: the job is requeued only after the save
committed (it requeued while the save was still being written), the event names the committed
checkpoint, and a failed or unfinished save is raised, not requeued."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint.async_save import AsyncSaver
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.preemption import PreemptionHandler


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in scontrol that records its arguments and the checkpoints committed when it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    (bin_dir / "scontrol").write_text(
        f"#!/bin/sh\necho \"$* / $(ls {tmp_path}/ck 2>/dev/null | grep '^step-' | tr '\\n' ' ')\" >> {log}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    return log


def _until_requeued(log: Path, seconds: float = 2.0):
    """An _after_chunks hook: hold the save (after its chunk files) until scontrol ran, or ``seconds``."""
    def hook() -> None:
        end = time.monotonic() + seconds
        while not log.exists() and time.monotonic() < end:
            time.sleep(0.02)
    return hook


def test_the_requeue_waits_for_the_asynchronous_save(tmp_path: Path, calls: Path, events) -> None:
    with AsyncSaver(tmp_path / "ck") as saver:
        requeued = PreemptionHandler().save_and_requeue(
            lambda: saver.save({"w": np.ones(1000)}, step=5, _after_chunks=_until_requeued(calls)),
            requeue=True)
    assert requeued is True
    assert calls.read_text().splitlines() == ["requeue 42 / step-0000000005 "]  # committed before the requeue
    (event,) = [e for e in events if e["event"] == "checkpoint.preempted_save"]
    assert event["path"] == str(tmp_path / "ck" / "step-0000000005") and event["step"] == 5
    assert event["bytes"] == 8000 and event["requeue"] is True


def test_a_failed_asynchronous_save_is_raised_and_not_requeued(tmp_path: Path, calls: Path, events) -> None:
    def boom() -> None:
        raise CheckpointError("disk said no")
    with AsyncSaver(tmp_path / "ck") as saver:
        with pytest.raises(CheckpointError, match="disk said no"):
            PreemptionHandler().save_and_requeue(
                lambda: saver.save({"w": np.ones(10)}, step=5, _after_chunks=boom), requeue=True)
    assert not calls.exists()  # never told Slurm the checkpoint is saved
    assert not [e for e in events if e["event"] == "checkpoint.preempted_save"]


def test_an_unfinished_asynchronous_save_is_not_requeued(tmp_path: Path, calls: Path) -> None:
    with AsyncSaver(tmp_path / "ck") as saver:
        with pytest.raises(CheckpointError, match=r"final save of step 5 did not finish within 0.2 s") as err:
            PreemptionHandler().save_and_requeue(
                lambda: saver.save({"w": np.ones(10)}, step=5, _after_chunks=lambda: time.sleep(2)),
                requeue=True, timeout=0.2)
        assert "not requeued" in err.value.message and "timeout=" in err.value.hint
    assert not calls.exists()
