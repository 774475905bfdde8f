"""Slurm preemption: ``sbatch --signal=B:USR1@120`` sends SIGUSR1 to the batch shell 120 s
before the time limit (or on preemption with a grace time). :class:`PreemptionHandler` turns
the signal into a flag the training loop polls, so the final save runs in the loop (not inside
a signal handler) and the job can requeue itself.

    handler = PreemptionHandler.install()
    for step in ...:
        train_step()
        if handler.requested:
            save(ckpt_dir, state, step=step, tags=["preempted"])
            handler.exit_for_requeue()
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from fabric_hpc.events import emit

REQUEUE_EXIT = 0


class PreemptionHandler:
    """Records that a preemption signal arrived; optionally calls ``on_signal`` (cheap work only)."""

    def __init__(self, signum: int = signal.SIGUSR1, on_signal: Callable[[int], None] | None = None):
        self.signum = signum
        self.on_signal = on_signal
        self._event = threading.Event()
        self._previous: object = None

    @classmethod
    def install(cls, signum: int = signal.SIGUSR1, on_signal: Callable[[int], None] | None = None
                ) -> PreemptionHandler:
        """Install in the main thread (Python only runs signal handlers there)."""
        handler = cls(signum, on_signal)
        handler._previous = signal.signal(signum, handler._handle)
        return handler

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()
        if self.on_signal is not None:
            self.on_signal(signum)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def save_and_requeue(self, save_fn: Callable[[], object], *, requeue: bool = True) -> None:
        """Run the final save, then ask Slurm to requeue this job (``scontrol requeue``) when
        running under Slurm."""
        result = save_fn()
        emit("checkpoint.preempted_save", result=str(result), job=os.environ.get("SLURM_JOB_ID"))
        job = os.environ.get("SLURM_JOB_ID")
        if requeue and job:
            import subprocess
            subprocess.run(["scontrol", "requeue", job], check=False, timeout=30)
