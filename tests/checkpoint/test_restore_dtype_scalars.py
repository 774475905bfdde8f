"""``restore(dtype=...)`` casts floating tensors but never 0-d (scalar) ones: PyTorch Adam's ``step``
is a float32 scalar tensor, and bfloat16 would round step 3001 to 3008 (a GradScaler's scale, a
loss-scale or a temperature are scalars too). And ``world_size`` is checked to be >= 1 first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import restore, save
from fabric_hpc.checkpoint.errors import CheckpointError


def test_adam_step_survives_a_bfloat16_restore(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    for st in opt.state.values():
        st["step"].fill_(3001.0)
    assert all(st["step"].dtype == torch.float32 and st["step"].dim() == 0 for st in opt.state.values())
    save(tmp_path / "ck", {"model": model.state_dict(), "optim": opt.state_dict()}, step=3001)
    got = restore(tmp_path / "ck", dtype="bfloat16", as_torch=True)
    steps = [s["step"] for s in got["optim"]["state"].values()]
    assert [float(s) for s in steps] == [3001.0, 3001.0]
    assert all(s.dtype == torch.float32 for s in steps)  # scalars come back as stored
    assert got["model"]["weight"].dtype == torch.bfloat16  # tensors are cast
    assert got["optim"]["state"][0]["exp_avg"].dtype == torch.bfloat16
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(got["optim"])
    assert float(next(iter(opt2.state.values()))["step"]) == 3001.0


def test_numpy_scalars_are_not_cast_but_one_element_arrays_are(tmp_path: Path) -> None:
    save(tmp_path / "ck", {"step": np.array(3001.0, np.float32), "v": np.array([3001.0], np.float32)}, step=1)
    got = restore(tmp_path / "ck", dtype="float16")
    assert got["step"].dtype == np.float32 and float(got["step"]) == 3001.0
    assert got["v"].dtype == np.float16


@pytest.mark.parametrize("world_size", [0, -2])
def test_world_size_below_one_is_named_before_the_rank(tmp_path: Path, world_size: int) -> None:
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    with pytest.raises(CheckpointError) as err:
        restore(tmp_path / "ck", world_size=world_size)
    assert "world_size must be a whole number >= 1" in err.value.message
    assert "0..-" not in (err.value.hint or "") and "rank" not in err.value.message
