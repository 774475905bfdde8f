"""A tiny CPU trainer for ``jobscripts/train_gang.sbatch`` (``TRAIN_MODULE``) that writes real
Llama weights: restore, train, save on signal -- the same command line and behaviour as the
numpy stand-in ``fabric_hpc.slurm.train_demo``, but the checkpoint is a model the PyTorch
engine can serve (``fabric infer prepare --checkpoint``).

``python -m fabric_hpc.inference.engines.train_tiny --ckpt-dir D --steps N``: builds the
``tiny`` preset's Llama (seeded), restores the latest checkpoint under D, runs plain SGD steps
on a next-token task (counting sequences, drawn from a generator seeded by the step, so a
resumed run continues exactly) through the engine's own forward pass, and on SIGUSR1, on SIGTERM
(a preemption) or at the end saves ``{"model": Hugging Face tensors, "trainer": {"step"}}`` with the model's
``config.json`` in ``user_metadata.hf_files``; on SIGUSR1 before the last step it then
requeues the job (``fabric_hpc.slurm.trainer.finish``). Rank 0 (``SLURM_PROCID``) locks D and
writes; other ranks compute the same steps (a data-parallel stand-in without communication).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SEQ, BATCH, LR = 16, 8, 0.5


def _batch(vocab: int, step: int) -> tuple[object, object]:
    import torch
    gen = torch.Generator().manual_seed(1000 + step)
    start = torch.randint(0, vocab, (BATCH, 1), generator=gen)
    seq = (start + torch.arange(SEQ + 1)) % vocab  # next token = this token + 1
    return seq[:, :-1], seq[:, 1:]


def train_step(params: dict, spec: object, step: int) -> float:
    """One SGD step through LlamaModel.prefill (differentiable without a KV cache)."""
    import torch
    import torch.nn.functional as F

    from fabric_hpc.inference.engines.torch_llama import LlamaModel

    tokens, target = _batch(spec.vocab_size, step)  # type: ignore[attr-defined]
    model = LlamaModel(spec, params, device=torch.device("cpu"), dtype=torch.float32)  # type: ignore[arg-type]
    logits = model.prefill(tokens, torch.full((BATCH,), SEQ), None, None, all_logits=True)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    for p in params.values():
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            p -= LR * p.grad
    return float(loss.detach())


def main(argv: list[str] | None = None) -> int:
    from fabric_hpc.slurm import trainer

    early = trainer.catch_early()  # first: a signal during the imports below must not kill the rank
    ap = trainer.parser("train_tiny", step_seconds=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    return trainer.run("train_tiny", lambda: _train(args, early))


def _train(args: argparse.Namespace, early: list[int]) -> int:
    from fabric_hpc.checkpoint import save
    from fabric_hpc.extras import require

    torch = require("torch", extra="torch", needed_for="train_tiny (a PyTorch training program)")
    from fabric_hpc.inference.engines.spec import PRESETS
    from fabric_hpc.slurm import trainer

    handler = trainer.install_handler(early)
    torch.set_num_threads(1)
    rank = trainer.env_rank()
    spec = PRESETS["tiny"]
    ckpt_dir = trainer.prepare_dir(args.ckpt_dir)
    if rank == 0:
        trainer.lock_dir(ckpt_dir)
    step = 0
    restoring, at = trainer.restore_point(ckpt_dir, args.restore_step, rank)
    if restoring:
        state = trainer.restore_state(ckpt_dir, at, as_torch=True)
        params = {k: v.float() for k, v in state["model"].items()}
        step = int(state["trainer"]["step"].item())
    else:
        params = _init(spec, args.seed)
    for p in params.values():
        p.requires_grad_(True)
    restored, losses = step, []
    if rank == 0:
        trainer.refuse_overwrite(ckpt_dir, restored, args.steps)
    print(f"train_tiny: rank {rank} started at step {step}", flush=True)
    while step < args.steps and not handler.requested:
        losses.append(train_step(params, spec, step))
        step += 1
        time.sleep(args.step_seconds)
    saved = step if rank == 0 and step > restored else None

    def save_step() -> object:
        if saved is None:
            return None
        return save(ckpt_dir, {"model": {k: v.detach() for k, v in params.items()},
                               "trainer": {"step": torch.tensor(step)}}, step=step,
                    metadata={"hf_files": {"config.json": spec.hf_config("float32")},
                              "trained_by": "fabric_hpc.inference.engines.train_tiny",
                              **trainer.run_metadata(restored if restoring else None)})

    def report(requeueing: bool) -> None:
        print(json.dumps({"rank": rank, "restored_step": restored, "step": step, "saved": saved,
                          "signalled": handler.requested, "requeueing": requeueing,
                          "signal": trainer.signal_name(handler),
                          "first_loss": losses[0] if losses else None,
                          "last_loss": losses[-1] if losses else None,
                          "ckpt_dir_env": os.environ.get("FABRIC_CKPT_DIR")}), flush=True)

    trainer.finish(handler, rank=rank, unfinished=step < args.steps, progressed=step > restored,
                   save=save_step, report=report)
    return 0


def _init(spec: object, seed: int) -> dict:
    """Seeded initial weights under Hugging Face names (normal(0, 0.02), norms 1)."""
    import torch

    from fabric_hpc.inference.engines.spec import hf_weight_names
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape, generator=gen) * 0.02
            for name, shape in hf_weight_names(spec).items()}  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
