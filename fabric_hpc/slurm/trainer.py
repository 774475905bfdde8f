"""What the job scripts' training programs share (``fabric_hpc.slurm.train_demo``,
``fabric_hpc.inference.engines.train_tiny``): the command line, the checks of every value from
the environment, the run lock on the checkpoint directory, which step to resume from, and the
end of a run (save, then requeue through :meth:`PreemptionHandler.save_and_requeue`).

A program calls :func:`catch_early` first (a signal during its imports must not kill the rank),
then :func:`run` with its body; a :class:`~fabric_hpc.errors.FabricError` (or an ``OSError`` on
the checkpoint directory) ends it with one ``<prog>: error: ...`` line (and its ``fix:``) and the
CLI's exit code (README.md: 2 usage, 3 bad input, 5 external system), never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.pidlock import PidLock

#: the file in the checkpoint directory that rank 0 of a run holds (flock) while it trains
RUN_LOCK = ".train.lock"
_HELD: list[PidLock] = []  # the run's lock, held until the process ends


def catch_early() -> list[int]:
    """Record SIGUSR1 and SIGTERM from now on (before the heavy imports): the list of signals."""
    early: list[int] = []
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: early.append(s))
    return early


def install_handler(early: list[int]) -> Any:
    """The library's PreemptionHandler in place of :func:`catch_early`'s recorder; a signal
    that arrived in between is raised again, so the handler records it."""
    from fabric_hpc.checkpoint.preemption import PreemptionHandler

    handler = PreemptionHandler.install()
    for sig in early[:1]:
        signal.raise_signal(sig)
    return handler


def _at_least_0(parse: Any, kind: str, below: str) -> Any:
    """An argparse type: ``parse(text)``, finite and 0 or more (``kind``: what it is not when it
    does not parse; ``below``: the message, with ``{}`` for the text, when it is not)."""
    def check(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(below.format(text))
        return value
    return check


_count = _at_least_0(int, "a whole number", "{} is negative: give 0 or more")
_seconds = _at_least_0(float, "a number of seconds", "{} is not 0 or more seconds")


def parser(prog: str, step_seconds: float) -> argparse.ArgumentParser:
    """The command line of every training program (a usage error exits 2, naming the flag)."""
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--steps", type=_count, default=20)
    ap.add_argument("--step-seconds", type=_seconds, default=step_seconds)
    ap.add_argument("--restore-step", type=_count, default=None,
                    help="resume from this step instead of the newest (train_gang.sbatch: RESTORE_STEP)")
    return ap


#: where launchers put this process's rank: Slurm's srun first, then plain ``mpiexec`` (PMI/Hydra,
#: Open MPI, PMIx)
RANK_VARIABLES = ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def env_rank() -> int:
    """This rank, from the first of :data:`RANK_VARIABLES` that is set (0 when none is), checked."""
    name = next((v for v in RANK_VARIABLES if v in os.environ), None)
    if name is None:
        return 0
    text = os.environ[name]
    if not text.isdigit():
        raise ConfigError(f"{name}={text!r} is not a rank (a whole number, 0 or more)",
                          hint=f"run the program under srun or mpiexec, or unset {name}")
    return int(text)


def prepare_dir(path: str) -> Path:
    """The checkpoint directory, created when missing; a file there is a ConfigError naming it."""
    from fabric_hpc.inputs import os_error

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"--ckpt-dir {str(p)!r} is a file, a checkpoint directory was expected",
                          hint="give a directory (train_gang.sbatch: FABRIC_CKPT_DIR, or the job name)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "--ckpt-dir (the checkpoint directory)", p) from None
    return p


def lock_dir(ckpt_dir: Path) -> PidLock:
    """Rank 0's lock on ``ckpt_dir`` for the whole run (released when the process ends): a second
    run in the same directory refuses at its start instead of colliding on a step later."""
    from fabric_hpc.checkpoint import CheckpointBusyError

    job, host = os.environ.get("SLURM_JOB_ID", "?"), socket.gethostname()
    earlier: list[tuple[str, str, str]] = []  # the holder (pid, job, host): an earlier run of this very job
    # only a requeued run (SLURM_RESTART_COUNT > 0) has an earlier run: a first run whose id a holder
    # shares is another job (a reset job id counter, another cluster on the same storage)
    requeued = os.environ.get("SLURM_RESTART_COUNT", "0").strip() not in ("", "0")

    def busy(owner: str) -> str:
        if job != "?" and requeued and _owner(owner)[1] == f"job {job}":
            earlier.append(_owner(owner))
            return (f"checkpoint directory {ckpt_dir} is held by an earlier run of this job "
                    f"({_holder(owner)}): Slurm requeued the job while that run's rank 0 lived on, e.g. on "
                    "a node Slurm lost contact with")
        return f"checkpoint directory {ckpt_dir} is in use by another training run ({_holder(owner)})"

    lock = PidLock(ckpt_dir / RUN_LOCK, mode=0o644, note=f"job {job} on {host}", busy=busy,
                   hint=f"give this run its own directory ({_new_dir_how()}), "
                        "or submit it with --dependency=afterany:<that job> to resume after it")
    try:
        lock.acquire()
    except ConfigError as exc:
        pid, _, where = earlier[0] if earlier else ("", "", "")
        hint = (f"stop that process on {where[:64]!r} (kill {pid}, or reboot that node), "
                f"then resume from its checkpoints: scontrol requeue {job} (while Slurm keeps the ended job, "
                "MinJobAge), or submit it again into the same checkpoint directory") if earlier else exc.hint
        raise CheckpointBusyError(exc.message, hint=hint) from None
    _HELD.append(lock)
    return lock


def _owner(owner: str) -> tuple[str, str, str]:
    """(``P``, ``job J``, ``HOST``) of the lock file's ``P job J on HOST``."""
    pid, _, rest = owner.partition(" ")
    job, _, host = rest.partition(" on ")
    return pid, job, host


def _holder(owner: str) -> str:
    """``job J, pid P on HOST`` from the lock file's ``P job J on HOST``."""
    pid, job, host = _owner(owner)
    return f"{job}, pid {pid} on {host}" if job and host else (owner or "another process")


def resume_step(ckpt_dir: Path, restore_step: int | None) -> int | None:
    """The step to restore: None for the newest (``latest``); with ``restore_step`` that step,
    unless this job (``SLURM_JOB_ID``, a requeued run) has saved a newer one: then that one."""
    from fabric_hpc.checkpoint import CheckpointNotFoundError, list_checkpoints, open_checkpoint

    if restore_step is None:
        return None
    steps = [r.step for r in list_checkpoints(ckpt_dir)]
    if restore_step not in steps and not steps:
        raise CheckpointNotFoundError(
            f"--restore-step (RESTORE_STEP) {restore_step}: no checkpoint of that step in {ckpt_dir}: the "
            "directory has no checkpoint at all",
            hint="train_gang.sbatch keys the directory by the job name: submit with the --job-name of the "
                 "run that saved the step (or set FABRIC_CKPT_DIR to its directory), or unset RESTORE_STEP")
    if restore_step not in steps:
        raise CheckpointNotFoundError(
            f"--restore-step (RESTORE_STEP) {restore_step}: no checkpoint of that step in {ckpt_dir} (steps: "
            f"{', '.join(map(str, steps[-10:]))})", hint="give a step `fabric ckpt list` shows")
    job = os.environ.get("SLURM_JOB_ID")
    for step in sorted((s for s in steps if s > restore_step), reverse=True):
        if job and open_checkpoint(ckpt_dir, step).manifest.user_metadata.get("job") == job:
            return step
    return restore_step


def restore_point(ckpt_dir: Path, restore_step: int | None, rank: int) -> tuple[bool, int | None]:
    """Where a rank starts: ``(False, None)`` from scratch, else ``(True, step)`` to restore (None:
    the newest, ``latest``), the same on every rank of a run. Rank 0 saves only at its run's end, but a
    rank that starts later may see that save: a checkpoint this very run saved (the job and its
    ``SLURM_RESTART_COUNT`` in :func:`run_metadata`) stands for the step the run started from."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, list_checkpoints, open_checkpoint

    if restore_step is None and not list_checkpoints(ckpt_dir):
        return False, None
    step = resume_step(ckpt_dir, restore_step)
    if rank == 0 or not os.environ.get("SLURM_JOB_ID"):
        return True, step
    try:
        meta = open_checkpoint(ckpt_dir, step).manifest.user_metadata
    except CheckpointCorruptError:
        return True, step  # restore_state names the damage and the fix
    this_run = {k: meta.get(k) for k in ("job", "restart")} == _run_key()
    if not this_run or "started_from" not in meta:
        return True, step
    start = meta["started_from"]
    return start is not None, start


def _run_key() -> dict[str, str | None]:
    return {"job": os.environ.get("SLURM_JOB_ID"), "restart": os.environ.get("SLURM_RESTART_COUNT", "0")}


def refuse_overwrite(ckpt_dir: Path, restored: int, target: int) -> None:
    """Rank 0, before training: a run from step ``restored`` to ``target`` saves one step in
    ``(restored, target]``; a ``step-N`` directory already there (e.g. newer steps left beside an
    older RESTORE_STEP) would fail that save after the training, so it is a ConfigError now."""
    import re
    import shlex

    found = sorted(int(m.group(1)) for e in os.scandir(ckpt_dir)
                   if (m := re.fullmatch(r"step-(\d{10})", e.name)))
    clash = [s for s in found if restored < s <= target]
    if not clash:
        return
    names = " ".join(shlex.quote(str(ckpt_dir / f"step-{s:010d}")) for s in clash)
    aside = shlex.quote(f"{ckpt_dir}.set-aside")
    raise ConfigError(
        f"{ckpt_dir} already has step(s) {', '.join(map(str, clash[-10:]))} newer than the step this run "
        f"starts from ({restored}) and not past its last step ({target}): its save would collide with "
        "them after the training",
        hint=f"move them out of the directory first (`mkdir -p {aside} && mv {names} {aside}/`; "
             "`fabric ckpt prune` keeps the newest steps, it does not drop them), or train into a new "
             f"directory ({_new_dir_how()})")


def _new_dir_how() -> str:
    """How train_gang.sbatch takes another checkpoint directory: FABRIC_CKPT_DIR, when the job set it,
    wins over the job name (so another --job-name would change nothing); the one the fabric TaskProlog
    exports, ``<ckpt_root>/<user>/<job name>``, follows the job name."""
    ckpt = os.environ.get("FABRIC_CKPT_DIR")
    if ckpt and not _task_prologs_dir(Path(ckpt)):
        return "train_gang.sbatch: FABRIC_CKPT_DIR is set, so set it to a new directory, " \
               "sbatch --export=ALL,FABRIC_CKPT_DIR=NEW_DIR; another --job-name would not change it"
    return ("train_gang.sbatch: another sbatch --job-name (the fabric TaskProlog's directory follows it), "
            "or --export=ALL,FABRIC_CKPT_DIR=NEW_DIR")


def _task_prologs_dir(ckpt: Path) -> bool:
    """Whether ``ckpt`` is the directory the fabric TaskProlog gives this job (its last two components
    the job's user and job name, as :func:`~fabric_hpc.slurm.task_fast.checkpoint_dir` makes them)."""
    from fabric_hpc.slurm.task_fast import job_dir_name, job_user

    return ckpt.name == job_dir_name(os.environ) and ckpt.parent.name == job_user()


def finish(handler: Any, *, rank: int, unfinished: bool, progressed: bool, save: Callable[[], object],
           report: Callable[[bool], None]) -> bool:
    """End a run: rank 0 saves (``save``), ``report(requeueing)`` prints the run's line, and on
    SIGUSR1 (the time limit) before the last step the job is requeued to resume from that save
    (``save_and_requeue``). A SIGTERM (a preemption, scancel) saves without requeueing: Slurm
    requeues a preempted job itself where PreemptMode=REQUEUE, and a scancel must end the job.
    A SIGUSR1 before the run's first step (``progressed`` False) is a ConfigError, not a requeue:
    a time limit within the signal's lead time would requeue the job forever without a step."""
    under_slurm = bool(os.environ.get("SLURM_JOB_ID"))
    requeue = rank == 0 and unfinished and handler.received == signal.SIGUSR1
    if requeue and under_slurm and not progressed:
        report(False)
        raise ConfigError("SIGUSR1 (the time limit's signal) came before this run's first step: not "
                          "requeued, a requeued run would get the same",
                          hint="give the job a time limit (sbatch --time) well over the --signal lead time "
                               "(train_gang.sbatch: --signal=B:USR1@120, 2 minutes) plus the start-up")
    requeueing = requeue and under_slurm

    def save_and_report() -> object:
        result = save() if rank == 0 else None
        report(requeueing)  # before the requeue: scontrol requeue ends this job's steps
        return result

    if not handler.requested:
        save_and_report()
        return False
    return bool(handler.save_and_requeue(save_and_report, requeue=requeue))


def run(prog: str, body: Callable[[], int]) -> int:
    """``body()``'s exit status; a FabricError or OSError is one error line and its exit code."""
    from fabric_hpc.errors import exit_code_for
    from fabric_hpc.inputs import os_error

    try:
        return body()
    except FabricError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exit_code_for(exc)
    except OSError as exc:
        err = os_error(exc)
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code


def restore_state(ckpt_dir: Path, step: int | None, **kw: Any) -> dict[str, Any]:
    """``restore(ckpt_dir, step=step)``; a damaged checkpoint's fix names RESTORE_STEP."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, restore

    try:
        return restore(ckpt_dir, step=step, **kw)
    except CheckpointCorruptError as exc:
        raise CheckpointCorruptError(exc.message, problems=exc.problems,
                                     hint=damaged_hint(ckpt_dir)) from None


def damaged_hint(ckpt_dir: Path) -> str:
    """The fix for a damaged checkpoint to restore from (every rank's, and train_check's)."""
    return (f"run `fabric ckpt verify {ckpt_dir}`, move the damaged step(s) out of the directory "
            "and resume from an older good step: train_gang.sbatch RESTORE_STEP=<step> (--restore-step)")


def run_metadata(started_from: int | None = None) -> dict[str, Any]:
    """The metadata a run saves with each step: the job that saved it (see :func:`resume_step`), its
    run (``SLURM_RESTART_COUNT``) and the step that run restored (None: from scratch), which
    :func:`restore_point` gives a rank that starts after the save."""
    return {**_run_key(), "started_from": started_from}


def signal_name(handler: Any) -> str | None:
    return signal.Signals(handler.received).name if handler.received else None
