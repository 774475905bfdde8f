"""The start checks of a training run, made once on the batch host before any rank starts.

``python -m fabric_hpc.slurm.train_check --ckpt-dir D --steps N [--restore-step R]`` refuses (one error
line, exit 3) what rank 0 of ``train_demo``/``train_tiny`` would refuse at its start: a checkpoint
directory locked by another run, a RESTORE_STEP the directory does not hold, steps that the run's save
would collide with. jobscripts/train_gang.sbatch runs it before ``srun``: a refusal inside the step
does not reliably end the other ranks, because ``srun --kill-on-bad-exit`` sends its kill once, and a
node whose part of the step is still launching drops it (Slurm's src/api/step_launch.c: "eventually
the slurmd should be made smart enough to really ensure that a killed step never starts"); a rank on
such a node then runs to the end. Rank 0 still makes the same checks (two runs started at once).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fabric_hpc.slurm import trainer


def main(argv: list[str] | None = None) -> int:
    ap = trainer.parser("train_check", step_seconds=0.1)
    ap.add_argument("--print-step", action="store_true",
                    help="print the step the run restores from (nothing for a fresh start) on stdout")
    ap.add_argument("--verify-step", type=int, default=None,
                    help="instead of the start checks: verify every chunk checksum of this step (exit 3 "
                         "when damaged), after a step whose ranks were killed")
    args = ap.parse_args(argv)
    if args.verify_step is not None:
        return trainer.run("train_check", lambda: verify_step(Path(args.ckpt_dir), args.verify_step))
    return trainer.run("train_check", lambda: check(args.ckpt_dir, args.steps, args.restore_step,
                                                    print_step=args.print_step))


def check(path: str, steps: int, restore_step: int | None, *, print_step: bool = False) -> int:
    """0 when a run may start; a refusal is the FabricError rank 0 would raise. The step to restore
    must pass verify's structural checks and have every chunk file of its stated size (cheap: no
    chunk is read), or the refusal is the damage every rank's restore would find, exit 3."""
    from fabric_hpc.checkpoint import list_checkpoints

    ckpt_dir = trainer.prepare_dir(path)
    lock = trainer.lock_dir(ckpt_dir)  # free now: released at once, rank 0 takes it for the run
    lock.release()
    trainer._HELD.remove(lock)
    restoring, at = trainer.restore_point(ckpt_dir, restore_step, 0)
    if restoring and at is None:
        at = max(r.step for r in list_checkpoints(ckpt_dir))
    trainer.refuse_overwrite(ckpt_dir, at if restoring else 0, steps)
    if restoring:
        _check_structure(ckpt_dir, at)
    if print_step:
        print(at if restoring else "", flush=True)
    return 0


def _check_structure(ckpt_dir: Path, step: int) -> None:
    from fabric_hpc.checkpoint import CheckpointCorruptError, open_checkpoint
    from fabric_hpc.checkpoint.restore import require_readable

    try:
        with open_checkpoint(ckpt_dir, step) as ck:
            require_readable(ck)
            for name in ck.names:
                ck.check_on_disk(ck.entry(name))
    except CheckpointCorruptError as exc:  # named with its step: the fix is to move that step aside
        raise CheckpointCorruptError(f"step {step} in {ckpt_dir}, which the run would restore from, is "
                                     f"damaged: {exc.message}", problems=exc.problems,
                                     hint=trainer.damaged_hint(ckpt_dir)) from None


def verify_step(ckpt_dir: Path, step: int) -> int:
    """0 when step ``step`` verifies (every chunk's CRC-32C); its damage is a CheckpointCorruptError
    (exit 3). train_gang.sbatch runs it when srun ended by a signal it did not send: a rank that found
    the damage exited 3 and ``--kill-on-bad-exit`` killed the others, so srun's status is 128+signal."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, verify

    report = verify(ckpt_dir, step=step)
    if not report.ok:
        shown = "; ".join(report.problems[:3]) + ("; ..." if len(report.problems) > 3 else "")
        raise CheckpointCorruptError(f"step {step} in {ckpt_dir}, which the run restored from, is damaged: "
                                     f"{shown}", problems=report.problems,
                                     hint=trainer.damaged_hint(ckpt_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
