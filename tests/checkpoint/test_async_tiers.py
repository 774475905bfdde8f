"""Async save, retention and prune, tiers, HDF5 round trip, preemption signal."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import (
    AsyncSaver, CheckpointBusyError, CheckpointError, RetentionPolicy, list_checkpoints, open_checkpoint,
    prune, restore, save, verify,
)
from fabric_hpc.checkpoint.hdf5 import export_h5, import_h5
from fabric_hpc.checkpoint.preemption import PreemptionHandler
from fabric_hpc.checkpoint.reshard import reshard
from fabric_hpc.checkpoint.store import read_latest, reading
from fabric_hpc.checkpoint.tiers import TieredStore, newest_complete
from tests.checkpoint.builders import assert_same, full_state


def test_async_save_snapshots_state_and_reports(tmp_path: Path) -> None:
    state = full_state()
    expected = {"model": {"embed": state["model"]["embed"].clone()}, "x": np.arange(10.0)}
    live = {"model": {"embed": state["model"]["embed"]}, "x": np.arange(10.0)}
    with AsyncSaver(tmp_path, slots=2) as saver:
        gate = threading.Event()
        handle = saver.save(live, step=1, _after_chunks=gate.wait)
        live["x"] += 100  # the training loop moves on and mutates its tensors
        live["model"]["embed"].zero_()
        assert not handle.done()
        gate.set()
        result = handle.wait(timeout=30)
    assert result.step == 1 and handle.throughput_gbps and handle.stall_seconds >= 0
    assert handle.nbytes >= result.nbytes
    assert_same(expected, restore(tmp_path, as_torch=False))


def test_async_policy_fail_and_wait(tmp_path: Path) -> None:
    gate = threading.Event()
    with AsyncSaver(tmp_path, slots=1, policy="fail") as saver:
        first = saver.save({"a": np.ones(4)}, step=1, _after_chunks=gate.wait)
        with pytest.raises(CheckpointBusyError, match="in flight"):
            saver.save({"a": np.ones(4)}, step=2)
        gate.set()
        first.wait(timeout=30)
    with AsyncSaver(tmp_path, slots=1, policy="wait") as saver:
        saver.save({"a": np.ones(4)}, step=2)
        second = saver.save({"a": np.zeros(4)}, step=3)  # waits for step 2 to finish
        second.wait(timeout=30)
    assert [r.step for r in list_checkpoints(tmp_path)] == [1, 2, 3]


def test_async_errors_surface_on_handle_and_staging_bound(tmp_path: Path) -> None:
    def boom() -> None:
        raise OSError("no space")

    with AsyncSaver(tmp_path, max_staging_bytes=1024) as saver:
        handle = saver.save({"a": np.ones(4)}, step=1, _after_chunks=boom)
        with pytest.raises(OSError, match="no space"):
            handle.wait(timeout=30)
        assert isinstance(handle.error, OSError)
        with pytest.raises(CheckpointError, match="staging"):
            saver.save({"a": np.ones(1000)}, step=2)
        saver.save({"a": np.ones(4)}, step=3).wait(timeout=30)
    assert read_latest(tmp_path) == "step-0000000003"


def test_retention_keep_last_every_and_tagged(tmp_path: Path) -> None:
    for step in range(1, 11):
        save(tmp_path, {"a": np.full(3, step)}, step=step, tags=["best"] if step == 3 else [])
    result = prune(tmp_path, RetentionPolicy(keep_last=2, keep_every=4))
    assert [r.step for r in list_checkpoints(tmp_path)] == [3, 4, 8, 9, 10]
    assert result.removed == [1, 2, 5, 6, 7] and result.busy == []
    with pytest.raises(CheckpointError, match="keep_last"):
        RetentionPolicy(keep_last=0)


def test_prune_skips_checkpoint_being_read(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save(tmp_path, {"a": np.full(1000, step)}, step=step)
    old = open_checkpoint(tmp_path, step=1)
    with reading(old.ref):
        result = prune(tmp_path, RetentionPolicy(keep_last=1))
        assert result.busy == [1] and result.removed == [2]
        assert np.array_equal(old.read("a"), np.full(1000, 1))
    assert prune(tmp_path, RetentionPolicy(keep_last=1)).removed == [1]


def test_concurrent_prune_while_restoring(tmp_path: Path) -> None:
    for step in range(1, 4):
        save(tmp_path, {"w": np.full((256, 256), step, np.float32)}, step=step)
    errors: list[BaseException] = []
    stop = threading.Event()

    def restorer() -> None:
        while not stop.is_set():
            try:
                got = restore(tmp_path)["w"]
                assert got[0, 0] == got[-1, -1] and got.shape == (256, 256)
            except Exception as exc:  # noqa: BLE001
                if "pruned" not in str(exc) and "disappeared" not in str(exc):
                    errors.append(exc)

    thread = threading.Thread(target=restorer)
    thread.start()
    for step in range(4, 24):
        save(tmp_path, {"w": np.full((256, 256), step, np.float32)}, step=step)
        prune(tmp_path, RetentionPolicy(keep_last=1))
    stop.set()
    thread.join()
    assert errors == []
    assert verify(tmp_path).ok and open_checkpoint(tmp_path).step == 23


def test_tiers_drain_and_restore_from_newest(tmp_path: Path) -> None:
    local, shared = tmp_path / "local", tmp_path / "shared"
    with TieredStore(local, shared, local_retention=RetentionPolicy(keep_last=1)) as tiers:
        for step in (1, 2, 3):  # saves outrun the drain: undrained ones must survive local pruning
            tiers.save({"a": np.full(5, step)}, step=step)
        tiers.flush()
    assert [r.step for r in list_checkpoints(shared)] == [1, 2, 3]
    assert [r.step for r in list_checkpoints(local)] == [3]
    assert verify(shared).ok and read_latest(shared) == "step-0000000003"
    assert [p.name for p in shared.iterdir() if p.name.startswith(".")] == [".lock"]
    save(shared, {"a": np.full(5, 9)}, step=9)  # e.g. another node got further
    ref = newest_complete(local, shared)
    assert ref.step == 9 and restore(ref.path)["a"][0] == 9


def test_tiers_refuse_a_step_already_on_the_shared_tier(tmp_path: Path) -> None:
    """A re-run step (after a rollback) is an error, as for a plain save: it used to be kept
    only locally, never drained, and pruned later while the shared tier kept the old values."""
    from fabric_hpc.checkpoint.tiers import drain, save_local

    local, shared = tmp_path / "local", tmp_path / "shared"
    with TieredStore(local, shared, local_retention=RetentionPolicy(keep_last=2)) as tiers:
        for step in (100, 200, 300):
            tiers.save({"w": np.full(4, step, np.float32)}, step=step)
        tiers.flush()
        with pytest.raises(CheckpointError, match="step 200 already exists in the shared tier") as info:
            tiers.save({"w": np.full(4, 999, np.float32)}, step=200)
        assert info.value.hint
        tiers.save({"w": np.full(4, 250, np.float32)}, step=250)
        tiers.flush()
    assert read_latest(local) == "step-0000000300"  # an older step never moves latest back
    assert restore(shared, step=200)["w"].tolist() == [200.0] * 4
    # the same step committed on the shared tier by someone else meanwhile: drain refuses
    _, part = save_local(tmp_path / "other", {"w": np.full(4, 7, np.float32)}, step=300)
    with pytest.raises(CheckpointError, match="was not drained"):
        drain(part, shared)
    assert restore(shared, step=300)["w"].tolist() == [300.0] * 4


def test_async_saves_into_tiers_and_a_restart_drains_what_was_left(tmp_path: Path) -> None:
    local, shared = tmp_path / "local", tmp_path / "shared"
    save(local, {"a": np.full(3, 4)}, step=4)  # committed locally, never drained (job killed)
    with TieredStore(local, shared, resume=True) as tiers, AsyncSaver(tiers) as saver:
        handle = saver.save({"a": np.full(3, 5), "b": np.ones((2, 2), np.float32)}, step=5)
        assert handle.wait().path == local / "step-0000000005"
        tiers.flush()
        assert tiers.newest().step == 5
    assert [r.step for r in list_checkpoints(shared)] == [4, 5] and verify(shared, step=4).ok
    assert restore(shared)["b"].tolist() == [[1, 1], [1, 1]]


def test_hdf5_round_trip_is_exact(tmp_path: Path) -> None:
    state = full_state()
    save(tmp_path / "a", state, step=7, tags=["x"], metadata={"k": [1, 2]}, chunk_shapes={"optim/m": [2, 9]})
    export_h5(tmp_path / "a", tmp_path / "ck.h5")
    assert oct(os.stat(tmp_path / "ck.h5").st_mode & 0o777) == "0o600"
    res = import_h5(tmp_path / "ck.h5", tmp_path / "b")
    a, b = open_checkpoint(tmp_path / "a"), open_checkpoint(res.path)
    assert a.manifest == b.manifest  # same step, metadata, chunk grid and checksums
    assert_same(restore(tmp_path / "a", as_torch=True), restore(tmp_path / "b", as_torch=True))


def test_offline_reshard_to_new_world_size(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import Shard
    w = np.arange(60, dtype=np.float32).reshape(10, 6)
    save(tmp_path / "a", {"w": Shard.of(w, 0, 0, 1), "b": np.ones(3)}, step=4)
    res = reshard(tmp_path / "a", tmp_path / "b", 3)
    ck = open_checkpoint(res.path)
    assert ck.manifest.world_size == 3 and len(ck.entry("w").chunks) == 3
    assert np.array_equal(restore(res.path, rank=2, world_size=3)["w"], w[8:])


def test_preemption_signal_triggers_final_save(tmp_path: Path) -> None:
    handler = PreemptionHandler.install()
    try:
        assert not handler.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.wait(5) and handler.requested
        handler.save_and_requeue(lambda: save(tmp_path, {"a": np.ones(2)}, step=1, tags=["preempted"]),
                                 requeue=False)
    finally:
        handler.uninstall()
    assert open_checkpoint(tmp_path).manifest.tags == ["preempted"]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_preemption_sigterm_asks_for_the_save_too(tmp_path: Path, sig: int) -> None:
    """Slurm preempts with SIGTERM (SIGUSR1 via --signal comes before the time limit only, or with
    PreemptParameters=send_user_signal): the handler caught SIGUSR1 only, so a preemption's SIGTERM
    killed the rank without a save."""
    handler = PreemptionHandler.install()
    try:
        os.kill(os.getpid(), sig)
        assert handler.wait(5) and handler.received == sig
        handler.save_and_requeue(lambda: save(tmp_path, {"a": np.ones(2)}, step=1), requeue=False)
    finally:
        handler.uninstall()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and open_checkpoint(tmp_path).step == 1
    only = PreemptionHandler.install(signal.SIGUSR1)  # one signal, as before
    try:
        assert only.signums == (signal.SIGUSR1,) and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        only.uninstall()


def test_a_failed_requeue_is_an_error_after_the_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused `scontrol requeue` was ignored, a missing scontrol a bare FileNotFoundError."""
    from fabric_hpc.errors import ExternalError

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    handler = PreemptionHandler()
    calls = iter(range(1, 10))
    saver = lambda: save(tmp_path / "ck", {"a": np.ones(2)}, step=next(calls))  # noqa: E731
    with pytest.raises(ExternalError, match="cannot requeue job 42: scontrol is not on PATH") as info:
        handler.save_and_requeue(saver)
    assert "the checkpoint is saved" in info.value.hint
    scontrol = bin_dir / "scontrol"
    scontrol.write_text("#!/bin/sh\necho 'Requested operation is presently disabled' >&2\nexit 1\n")
    scontrol.chmod(0o755)
    with pytest.raises(ExternalError, match="scontrol requeue failed: Requested operation is presently disabled"):
        handler.save_and_requeue(saver)
    scontrol.write_text("#!/bin/sh\nexit 0\n")
    assert handler.save_and_requeue(saver) is True
    assert handler.save_and_requeue(saver, requeue=False) is False
    assert [r.step for r in list_checkpoints(tmp_path / "ck")] == [1, 2, 3, 4]


def test_flush_times_out_naming_the_nodes_that_drained(tmp_path: Path) -> None:
    """A step whose commit never comes (a node died before its drain) stops flush's wait with a
    CheckpointIOError naming the nodes that did drain, not a hang."""
    import time

    from fabric_hpc.checkpoint.errors import CheckpointIOError
    from fabric_hpc.checkpoint.tiers import wait_committed
    staging = tmp_path / ".drain-step-0000000007-abc123"
    staging.mkdir()
    (staging / ".node-0").write_bytes(b"")
    with pytest.raises(CheckpointIOError, match=r"step 7 is not committed .* after 0.2 s .*drained: \[0\]") as info:
        wait_committed(tmp_path, 7, time.monotonic() + 0.2, 0.2)
    assert "flush(timeout=" in (info.value.hint or "")


def test_flush_is_satisfied_by_a_newer_committed_step(tmp_path: Path) -> None:
    """A step pruned from the shared tier after a newer one committed does not make a slow rank's
    flush wait for ever: the newer commit answers it (every rank's newest() is then that step)."""
    import time

    from fabric_hpc.checkpoint.tiers import wait_committed
    save(tmp_path, {"w": np.zeros(2)}, step=9)
    assert wait_committed(tmp_path, 7, time.monotonic() + 5.0, 5.0) == tmp_path / "step-0000000009"


@pytest.mark.parametrize(("sig", "requeued"), [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_a_sigterm_save_does_not_requeue_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    sig: int, requeued: bool) -> None:
    """scancel sends SIGTERM, and Slurm requeues a cancelled job that is still completing: the
    default requeued it, bringing a cancelled job back (train fixes, seen on 25.11)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    handler = PreemptionHandler.install()
    try:
        os.kill(os.getpid(), sig)
        assert handler.wait(5)
        assert handler.save_and_requeue(lambda: save(tmp_path / "ck", {"a": np.ones(2)}, step=1)) is requeued
        assert handler.save_and_requeue(lambda: None, requeue=True) is True  # asked: requeued
    finally:
        handler.uninstall()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["requeue 42"] * (1 + requeued)
