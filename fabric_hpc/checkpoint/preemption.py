"""Slurm preemption: ``sbatch --signal=B:USR1@120`` sends SIGUSR1 to the batch shell 120 s
before the time limit (or on preemption with a grace time). :class:`PreemptionHandler` turns
the signal into a flag the training loop polls, so the final save runs in the loop (not inside
a signal handler) and the job can requeue itself.

    handler = PreemptionHandler.install()
    for step in ...:
        train_step()
        if handler.requested:
            handler.save_and_requeue(lambda: save(ckpt_dir, state, step=step, tags=["preempted"]))
            break
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from fabric_hpc.errors import ExternalError
from fabric_hpc.events import emit

#: seconds ``scontrol requeue`` may take before the requeue counts as failed
REQUEUE_TIMEOUT = 30


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

    def save_and_requeue(self, save_fn: Callable[[], object], *, requeue: bool = True) -> bool:
        """Run the final save, then ask Slurm to requeue this job (``scontrol requeue``) when
        running under Slurm. Returns whether the job was requeued (False: ``requeue=False`` or
        not under Slurm). A requeue that fails (scontrol missing, timing out or refusing) raises
        an :class:`~fabric_hpc.errors.ExternalError` after the save has completed."""
        result = save_fn()
        job = os.environ.get("SLURM_JOB_ID")
        emit("checkpoint.preempted_save", result=str(result), job=job)
        if not (requeue and job):
            return False
        _requeue(job)
        return True


def _requeue(job: str) -> None:
    import subprocess
    hint = "the checkpoint is saved: resubmit the job by hand (sbatch), or check `scontrol requeue` " \
           "(the job needs --requeue, or JobRequeue=1 in slurm.conf)"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False,
                              timeout=REQUEUE_TIMEOUT)
    except FileNotFoundError:
        raise ExternalError(f"cannot requeue job {job}: scontrol is not on PATH", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise ExternalError(f"cannot requeue job {job}: scontrol requeue took over {REQUEUE_TIMEOUT} s",
                            hint=hint) from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ExternalError(f"cannot requeue job {job}: scontrol requeue failed: {why[0]}", hint=hint)
