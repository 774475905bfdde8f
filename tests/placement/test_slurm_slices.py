"""The Slurm baselines' slices domain by domain equal the former slice-by-slice loop.

``slurm._slices`` looked for the first domain holding a slice again for every slice (over every
domain's sums); it now keeps taking slices from the first domain until it holds no more
(slurm-tree, 32,768 one-GPU slices on a 128-SU SuperPOD: ~20 s, still one ``run`` per slice).
The former loop is the oracle (patched in): same GPUs, same costs, same failures, on random
states of several fabrics.
"""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement import slurm as slurm_mod
from fabric_hpc.topology import build
from tests.placement.test_greedy_slices import FABRICS, _placements, _requests

SOLVERS = ("slurm-tree", "slurm-block")


def _plain_slices(p, cap: np.ndarray, run):
    """The former ``_slices``: each slice in the first domain that holds it, searched per slice."""
    out: dict[int, int] = {}
    cap = cap.copy()
    for _ in range(p.slices):
        got = slurm_mod._first_domain(p, cap, p.slice_level, p.slice_size, run)
        if got is None:
            return None
        for h, c in got.items():
            out[h] = out.get(h, 0) + c
            cap[h] -= c
    return out


@pytest.mark.parametrize("name", sorted(FABRICS))
def test_slices_domain_by_domain_equal_slice_by_slice(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, levels = FABRICS[name]
    fab = build(spec())
    requests = [r for r in _requests(levels) if "slices" in r]
    fast = _placements(fab, requests, SOLVERS)
    monkeypatch.setattr(slurm_mod, "_slices", _plain_slices)
    assert _placements(fab, requests, SOLVERS) == fast
    assert sum(isinstance(x, tuple) for x in fast) >= len(fast) // 3  # mostly placements compared
