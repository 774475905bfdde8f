"""Small builders for checkpoint tests: deterministic states, split helpers."""

from __future__ import annotations

import numpy as np


def full_state(seed: int = 0, scale: int = 1) -> dict:
    """A small LLM-like state: fp32 and bf16 matrices of awkward shapes, optimizer scalars."""
    import torch
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    return {
        "model": {
            "embed": torch.randn(13 * scale, 8, generator=g).to(torch.bfloat16),
            "layers": {str(i): {"w": rng.standard_normal((10 * scale, 6)).astype(np.float32),
                                "b": rng.standard_normal(7 * scale).astype(np.float32)} for i in range(2)},
        },
        "optim": {"step": np.array(42, np.int64), "m": rng.standard_normal((5, 9)).astype(np.float64)},
    }


SPLIT = {"model/embed": 0, "model/layers/0/w": 0, "model/layers/1/w": 1, "optim/m": 1}


def assert_same(a, b) -> None:
    import torch
    if isinstance(a, dict):
        assert set(a) == set(b), (sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k])
        return
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.view(torch.int16) if a.dtype == torch.bfloat16 else a,
                           b.view(torch.int16) if b.dtype == torch.bfloat16 else b)
        return
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``fabric ARGS`` through ``main()``: (exit code, stdout, stderr)."""
    from fabric_hpc.cli.main import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
