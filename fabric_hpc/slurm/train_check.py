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

from fabric_hpc.slurm import trainer


def main(argv: list[str] | None = None) -> int:
    args = trainer.parser("train_check", step_seconds=0.1).parse_args(argv)
    return trainer.run("train_check", lambda: check(args.ckpt_dir, args.steps, args.restore_step))


def check(path: str, steps: int, restore_step: int | None) -> int:
    """0 when a run may start; a refusal is the FabricError rank 0 would raise."""
    from fabric_hpc.checkpoint import list_checkpoints

    ckpt_dir = trainer.prepare_dir(path)
    lock = trainer.lock_dir(ckpt_dir)  # free now: released at once, rank 0 takes it for the run
    lock.release()
    trainer._HELD.remove(lock)
    restoring, at = trainer.restore_point(ckpt_dir, restore_step, 0)
    if restoring and at is None:
        at = max(r.step for r in list_checkpoints(ckpt_dir))
    trainer.refuse_overwrite(ckpt_dir, at if restoring else 0, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
