"""A small CPU "training" worker for ``jobscripts/train_gang.sbatch``: restore, step, save on signal.

``python -m fabric_hpc.slurm.train_demo --ckpt-dir D --steps N [--restore-step S]``: restores the
newest checkpoint under D (or step S, see :func:`fabric_hpc.slurm.trainer.resume_step`), runs numpy
steps, and on SIGUSR1 (Slurm's ``--signal=B:USR1@T``, forwarded by the batch script), on SIGTERM
(a preemption) or at the end saves a checkpoint of its step and weights; on SIGUSR1 before the
last step it then requeues the job (``PreemptionHandler.save_and_requeue``), which resumes from
that save. Rank 0 (``SLURM_PROCID``) locks D for the run and writes; the other ranks compute the
same steps. Prints one JSON line; a failure is one error line and the CLI's exit code.
"""

from __future__ import annotations

import argparse
import sys

from fabric_hpc.slurm import trainer


def main(argv: list[str] | None = None) -> int:
    early = trainer.catch_early()  # first: a signal during the imports below must not kill the rank
    args = trainer.parser("train_demo", step_seconds=0.1).parse_args(argv)
    return trainer.run("train_demo", lambda: _train(args, early))


def _train(args: argparse.Namespace, early: list[int]) -> int:
    import json
    import os
    import time

    import numpy as np

    from fabric_hpc.checkpoint import save

    handler = trainer.install_handler(early)
    rank = trainer.env_rank()
    ckpt_dir = trainer.prepare_dir(args.ckpt_dir)
    if rank == 0:
        trainer.lock_dir(ckpt_dir)
    step, w = 0, np.zeros(16, dtype=np.float32)
    restoring, at = trainer.restore_point(ckpt_dir, args.restore_step, rank)
    if restoring:
        state = trainer.restore_state(ckpt_dir, at)
        w = np.asarray(state["model"]["w"])
        step = int(np.asarray(state["model"]["step"]).item())
    restored, steps = step, args.steps
    if rank == 0:
        trainer.refuse_overwrite(ckpt_dir, restored, steps)
    print(f"train_demo: rank {rank} started at step {step}", flush=True)
    while step < steps and not handler.requested:
        w = w + 1.0  # one "optimizer step"
        step += 1
        time.sleep(args.step_seconds)
    saved = step if rank == 0 and step > restored else None

    def save_step() -> object:
        if saved is None:
            return None
        return save(ckpt_dir, {"model": {"w": w, "step": np.array(step, dtype=np.int64)}}, step=step,
                    metadata=trainer.run_metadata(restored if restoring else None))

    def report(requeueing: bool) -> None:
        print(json.dumps({"rank": rank, "restored_step": restored, "step": step, "saved": saved,
                          "signalled": handler.requested, "requeueing": requeueing,
                          "signal": trainer.signal_name(handler), "w0": float(w[0]),
                          "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                          "nccl_topo_file": os.environ.get("NCCL_TOPO_FILE"),
                          "ckpt_dir_env": os.environ.get("FABRIC_CKPT_DIR")}), flush=True)

    trainer.finish(handler, rank=rank, unfinished=step < steps, progressed=step > restored,
                   save=save_step, report=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
