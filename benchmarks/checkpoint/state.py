"""The synthetic LLM-like state of the checkpoint benchmark: ~200 tensors, fp32 and bf16.

Contents are random bytes (incompressible, so zarr's default compressor gains nothing), copied
from a 256 MiB random pool at rotating offsets so building 2 GiB takes seconds, not minutes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def layout(target_gib: float = 2.0) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of every tensor: bf16 attention/MLP weights, fp32 norms and an fp32
    master-like slice per layer, a bf16 embedding and an fp32 head, scaled to ``target_gib``."""
    layers, hidden = 22, 256
    while _bytes(layers, hidden) < target_gib * 2**30:
        hidden += 64
    out = [("model/embed", (8192, hidden), "bfloat16")]
    for i in range(layers):
        p = f"model/layers/{i}/"
        out += [(p + "ln1", (hidden,), "float32"), (p + "ln2", (hidden,), "float32")]
        out += [(p + n, (hidden, hidden), "bfloat16") for n in ("q", "k", "v", "o")]
        out += [(p + "up", (3 * hidden, hidden), "bfloat16"), (p + "down", (hidden, 3 * hidden), "bfloat16"),
                (p + "gate_f32", (hidden // 2, hidden), "float32")]
    out += [("model/head", (4096, hidden), "float32"), ("optim/step", (), "int64")]
    return out


def llm_state(target_gib: float = 2.0, seed: int = 0) -> dict[str, Any]:
    """The state of :func:`layout` filled with random bytes (finite values)."""
    import torch
    pool = np.random.default_rng(seed).integers(0, 256, 256 << 20, dtype=np.uint8)
    cursor = [0]

    def t(shape: tuple[int, ...], dtype: Any) -> Any:
        out = torch.empty(shape, dtype=dtype)
        view = out.reshape(-1).view(torch.uint8).numpy()
        pos = 0
        while pos < view.size:
            start = cursor[0] % (pool.size - 4096)
            n = min(view.size - pos, pool.size - start)
            view[pos:pos + n] = pool[start:start + n]
            pos += n
            cursor[0] += 7919 * 64 + n
        if dtype in (torch.float32, torch.bfloat16):
            out.nan_to_num_(0.0)  # keep values finite (random bits make NaNs)
        return out

    state: dict[str, Any] = {}
    for name, shape, dtype in layout(target_gib):
        node = state
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = t(shape, getattr(torch, dtype))
    return state


def _bytes(layers: int, h: int) -> int:
    per_layer = 2 * h * 4 + 4 * h * h * 2 + 2 * 3 * h * h * 2 + (h // 2) * h * 4
    return 8192 * h * 2 + layers * per_layer + 4096 * h * 4


def flat(state: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k in sorted(state):
        name = f"{prefix}/{k}" if prefix else k
        out += flat(state[k], name) if isinstance(state[k], dict) else [(name, state[k])]
    return out


def nbytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for _, t in flat(state))
