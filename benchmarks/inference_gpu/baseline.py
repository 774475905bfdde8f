"""The stock baseline: ``transformers`` ``generate()`` on static batches in arrival order.

Each batch is left-padded to its longest prompt and generates until its longest output
(``min_new_tokens = max_new_tokens``): what a plain ``generate()`` loop over fixed batches does.
Useful output = each request's own output length; the rest is padding.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.inference_gpu.workload import Req


def padding_waste(reqs: list[Req], batch: int) -> tuple[float, int]:
    """Padding slots / processed slots, and the decode steps run, for static batches."""
    padded = useful = steps = 0
    for i in range(0, len(reqs), batch):
        part = reqs[i:i + batch]
        p, o = max(len(r.prompt) for r in part), max(r.out for r in part)
        padded += len(part) * (p + o)
        useful += sum(len(r.prompt) + r.out for r in part)
        steps += o + 1
    return (padded - useful) / padded, steps


def run_generate(model: Any, reqs: list[Req], batch: int, device: Any) -> dict[str, Any]:
    """Time static-batch ``generate()`` over ``reqs``; return throughput and waste."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    t0 = time.perf_counter()
    for i in range(0, len(reqs), batch):
        part = reqs[i:i + batch]
        plen = max(len(r.prompt) for r in part)
        ids = torch.zeros((len(part), plen), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(part):  # left padding
            ids[j, plen - len(r.prompt):] = torch.tensor(r.prompt)
            mask[j, plen - len(r.prompt):] = 1
        new = max(r.out for r in part)
        with torch.inference_mode():
            out = model.generate(ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                 pad_token_id=0, eos_token_id=None)
        assert out.shape[1] == plen + new
    sync()
    wall = time.perf_counter() - t0
    waste, steps = padding_waste(reqs, batch)
    useful_out = sum(r.out for r in reqs)
    return {"requests": len(reqs), "wall_s": wall, "output_tokens": useful_out,
            "output_tokens_per_s": useful_out / wall, "padding_waste": waste, "steps": steps}
