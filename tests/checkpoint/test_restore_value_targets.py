"""Non-tensor leaves in restore(into=...): an optimizer's or LR scheduler's state_dict() holds
plain values (param_groups, counters); they were reported "not in the checkpoint" with a hint to
list its tensors. Now a value in ``into`` asks for the checkpoint's value, which comes back in the
returned dict (Python values cannot be filled in place); a placeholder where the checkpoint
holds a tensor is named as not a tensor target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, CheckpointNotFoundError, restore, save

torch = pytest.importorskip("torch")


def _trained(lr: float) -> tuple:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.95), amsgrad=True)
    m(torch.randn(5, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 10, total_steps=100)
    return m, opt, sched


def test_an_optimizer_and_scheduler_round_trip_through_into(tmp_path: Path) -> None:
    m, opt, sched = _trained(1e-3)
    opt.step()  # the scheduler's first step after an optimizer step, as PyTorch wants (else it warns)
    sched.step()
    save(tmp_path, {"model": m.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict()}, step=1)
    m2, opt2, sched2 = _trained(5e-2)
    with torch.no_grad():
        for p in m2.parameters():
            p.zero_()
    out = restore(tmp_path, into={"model": m2.state_dict(), "optim": opt2.state_dict(),
                                  "sched": sched2.state_dict()})
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))  # filled in place
    assert out["optim"]["param_groups"] == opt.state_dict()["param_groups"]
    assert out["sched"] == sched.state_dict()
    opt2.load_state_dict(out["optim"])
    sched2.load_state_dict(out["sched"])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] and sched2.last_epoch == sched.last_epoch


@pytest.mark.parametrize("leaf", [None, "x", [0] * 32])
def test_a_placeholder_where_a_tensor_is_stored_is_named_not_a_tensor_target(tmp_path: Path,
                                                                             leaf: object) -> None:
    save(tmp_path, {"model": {"0.weight": np.ones((8, 4), np.float32)}}, step=1)
    with pytest.raises(CheckpointError) as info:
        restore(tmp_path, into={"model": {"0.weight": leaf}})
    assert not isinstance(info.value, CheckpointNotFoundError)
    assert "model/0.weight" in info.value.message and "not a tensor" in info.value.message
    assert "(8, 4)" in info.value.hint and "float32" in info.value.hint


def test_a_tensor_target_where_a_value_is_stored_says_so(tmp_path: Path) -> None:
    save(tmp_path, {"cfg": {"lr": 0.1}, "w": np.ones(2)}, step=1)
    with pytest.raises(CheckpointError) as info:
        restore(tmp_path, into={"cfg": np.zeros(1)})
    assert "value" in info.value.message and "'cfg'" in info.value.message


def test_a_value_not_in_the_checkpoint_is_not_found(tmp_path: Path) -> None:
    save(tmp_path, {"w": np.ones(2)}, step=1)
    with pytest.raises(CheckpointNotFoundError, match="'sched'"):
        restore(tmp_path, into={"sched": {"last_epoch": 3}, "w": np.zeros(2)})


def test_a_fresh_optimizers_empty_state_is_named_with_the_way_out(tmp_path: Path) -> None:
    m, opt, _ = _trained(1e-3)
    save(tmp_path, {"optim": opt.state_dict()}, step=1)
    fresh = torch.optim.AdamW(m.parameters())
    with pytest.raises(CheckpointError) as info:
        restore(tmp_path, into={"optim": fresh.state_dict()})
    assert "'optim/state' is an empty dict, not a tensor target" in info.value.message
    assert "names=['optim/state']" in info.value.hint
    back = restore(tmp_path, names=["optim"], as_torch=True)
    fresh.load_state_dict(back["optim"])  # the way out works
