"""A small CPU "training" worker for ``jobscripts/train_gang.sbatch``: restore, step, save on signal.

``python -m fabric_hpc.slurm.train_demo --ckpt-dir D --steps N``: restores the latest checkpoint
under D (``fabric_hpc.checkpoint``), runs numpy steps, and on SIGUSR1 (Slurm's ``--signal=B:USR1@T``,
forwarded by the batch script), on SIGTERM (a preemption) or at the end saves a checkpoint of its
step and weights. Rank 0
(``SLURM_PROCID``) writes; the other ranks compute the same steps. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    signalled: list[int] = []  # first: a signal during the imports below must not kill the rank
    for sig in (signal.SIGUSR1, signal.SIGTERM):  # before the time limit; a preemption (Slurm's default)
        signal.signal(sig, lambda s, _f: signalled.append(s))
    ap = argparse.ArgumentParser(prog="train_demo")
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--step-seconds", type=float, default=0.1)
    args = ap.parse_args(argv)
    import numpy as np

    from fabric_hpc.checkpoint import list_checkpoints, restore, save

    rank = int(os.environ.get("SLURM_PROCID", "0"))
    os.makedirs(args.ckpt_dir, exist_ok=True)
    step, w = 0, np.zeros(16, dtype=np.float32)
    if list_checkpoints(args.ckpt_dir):
        state = restore(args.ckpt_dir)
        w = np.asarray(state["model"]["w"])
        step = int(np.asarray(state["model"]["step"]).item())
    restored = step
    print(f"train_demo: rank {rank} started at step {step}", flush=True)
    while step < args.steps and not signalled:
        w = w + 1.0  # one "optimizer step"
        step += 1
        time.sleep(args.step_seconds)
    saved = None
    if rank == 0 and step > restored:
        save(args.ckpt_dir, {"model": {"w": w, "step": np.array(step, dtype=np.int64)}}, step=step)
        saved = step
    print(json.dumps({"rank": rank, "restored_step": restored, "step": step, "saved": saved,
                      "signalled": bool(signalled),
                      "signal": signal.Signals(signalled[0]).name if signalled else None,
                      "w0": float(w[0]),
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "nccl_topo_file": os.environ.get("NCCL_TOPO_FILE"),
                      "ckpt_dir_env": os.environ.get("FABRIC_CKPT_DIR")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
