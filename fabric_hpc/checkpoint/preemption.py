"""Slurm preemption and time limits: the training loop is told to save, and the final save runs
in the loop (not inside a signal handler) before the job ends or requeues itself.

Two signals mean "save now" (see Slurm 25.11 ``sbatch(1)`` ``--signal`` and ``slurm.conf(5)``
``GraceTime``, ``KillWait``, ``PreemptParameters``):

* SIGUSR1 -- ``sbatch --signal=B:USR1@120`` sends it to the batch shell 120 s before the job's
  *time limit* only (the batch script forwards it to the ranks); on preemption it is sent only
  with ``PreemptParameters=send_user_signal``.
* SIGTERM -- what a *preemption* sends by default: the job's tasks get SIGCONT and SIGTERM at
  once, and SIGKILL when the partition's ``GraceTime`` (then ``KillWait``, default 30 s) has run
  out; the time limit and ``scancel`` also send SIGTERM, then SIGKILL after KillWait. GraceTime +
  KillWait must cover one save.

:class:`PreemptionHandler` catches both by default and records which arrived::

    handler = PreemptionHandler.install()      # SIGUSR1 and SIGTERM
    for step in ...:
        train_step()
        if handler.requested:
            handler.save_and_requeue(lambda: save(ckpt_dir, state, step=step, tags=["preempted"]))
            break

``save_and_requeue`` requeues after SIGUSR1 (the time limit is near) and not after SIGTERM
(``scancel``, a preemption: Slurm decides), unless told otherwise (``requeue=``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from fabric_hpc.checkpoint.async_save import SaveHandle
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.writer import SaveResult
from fabric_hpc.errors import ExternalError
from fabric_hpc.events import emit

#: the signals that ask for a final save: Slurm's user signal before the time limit, and the
#: SIGTERM a preemption (and the time limit, scancel, a shutdown) sends
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

#: seconds ``scontrol requeue`` may take before the requeue counts as failed
REQUEUE_TIMEOUT = 30


class PreemptionHandler:
    """Records that a preemption signal arrived (``signum``: one signal or several, default
    SIGUSR1 and SIGTERM); optionally calls ``on_signal`` (cheap work only)."""

    def __init__(self, signum: int | Sequence[int] = PREEMPT_SIGNALS,
                 on_signal: Callable[[int], None] | None = None):
        self.signums = (signum,) if isinstance(signum, int) else tuple(signum)
        self.signum = self.signums[0]
        self.on_signal = on_signal
        self.received: int | None = None  # the first signal that arrived
        self._event = threading.Event()
        self._previous: dict[int, object] = {}

    @classmethod
    def install(cls, signum: int | Sequence[int] = PREEMPT_SIGNALS,
                on_signal: Callable[[int], None] | None = None) -> PreemptionHandler:
        """Install in the main thread (Python only runs signal handlers there)."""
        handler = cls(signum, on_signal)
        for sig in handler.signums:
            handler._previous[sig] = signal.signal(sig, handler._handle)
        return handler

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self._event.set()
        if self.on_signal is not None:
            self.on_signal(signum)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python, nothing to put back
                signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous = {}

    def save_and_requeue(self, save_fn: Callable[[], object], *, requeue: bool | None = None,
                         timeout: float | None = None) -> bool:
        """Run the final save, then ask Slurm to requeue this job (``scontrol requeue``) when
        running under Slurm. ``requeue=None`` (the default) requeues unless the signal that arrived
        is SIGTERM: that one also comes from ``scancel`` and the end of the time limit, and Slurm
        requeues a cancelled job that is still completing (seen on 25.11), while a preemption that
        should requeue does so itself (``PreemptMode=REQUEUE``). Returns whether the job was
        requeued (False: not asked, or not under Slurm). A requeue that fails (scontrol missing,
        timing out or refusing) raises an :class:`~fabric_hpc.errors.ExternalError` after the
        save has completed.

        ``save_fn`` may return an asynchronous save's :class:`SaveHandle` (``AsyncSaver.save``):
        it is waited for (at most ``timeout`` seconds; None: until it ends) before the event and
        the requeue. A save that fails raises its error, one not done in time a CheckpointError;
        neither requeues."""
        if requeue is None:
            requeue = self.received != signal.SIGTERM
        result = _finished(save_fn(), timeout)
        job = os.environ.get("SLURM_JOB_ID")
        emit("checkpoint.preempted_save", **saved_fields(result),
             job=int(job) if job and job.isdigit() else job,  # an integer, as the agent's events
             signal=signal.Signals(self.received).name if self.received else None,
             requeue=bool(requeue and job))
        if not (requeue and job):
            return False
        _requeue(job)
        return True


def _finished(result: object, timeout: float | None) -> object:
    """The SaveResult of an asynchronous save's handle once it ended; anything else as it is."""
    if not isinstance(result, SaveHandle):
        return result
    try:
        return result.wait(timeout)
    except TimeoutError:
        raise CheckpointError(f"the final save of step {result.step} did not finish within {timeout} s: "
                              "the job was not requeued",
                              hint="give save_and_requeue a longer timeout= (the partition's GraceTime plus "
                                   "KillWait must cover one save), or save synchronously") from None


def saved_fields(result: object) -> dict[str, object]:
    """``path``, ``step``, ``bytes`` and ``seconds`` of what ``save_fn`` returned, as in
    ``checkpoint.saved``: all of a SaveResult (an asynchronous save's, once its handle ended); the
    ``step`` alone of anything else that has one; nulls otherwise (a rank that saved nothing
    returns None)."""
    fields: dict[str, object] = {"path": None, "step": None, "bytes": None, "seconds": None}
    if isinstance(result, SaveResult):
        return {"path": str(result.path), "step": result.step, "bytes": result.nbytes,
                "seconds": round(result.seconds, 3)}
    step = getattr(result, "step", None)
    if isinstance(step, int) and not isinstance(step, bool):
        fields["step"] = step
    return fields


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
