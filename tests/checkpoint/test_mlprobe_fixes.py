"""What an ML engineer new to fabric met (probe, 2026-12-07), each pinned by a test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import list_checkpoints, restore, save
from tests.checkpoint.builders import run_cli


def test_import_into_a_root_holding_the_step_has_a_fix_the_command_can_follow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "fix: save under a new step", and `fabric ckpt import` took no --step."""
    save(tmp_path / "ck", {"w": np.arange(6.0)}, step=5)
    assert run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5", str(tmp_path / "ck.h5"))[0] == 0
    code, _, err = run_cli(capsys, "ckpt", "import", "--h5", str(tmp_path / "ck.h5"), str(tmp_path / "ck"))
    assert code == 3 and "already exists" in err and "--step" in err, err
    code, _, err = run_cli(capsys, "ckpt", "import", "--h5", str(tmp_path / "ck.h5"), str(tmp_path / "ck"),
                           "--step", "6")
    assert code == 0, err
    assert [c.step for c in list_checkpoints(tmp_path / "ck")] == [5, 6]
    assert np.array_equal(restore(tmp_path / "ck", step=6)["w"], np.arange(6.0))


def test_the_resume_example_of_the_docs_works_with_a_fresh_optimizer(tmp_path: Path) -> None:
    """docs/checkpoint.md's `into=` example refuses a fresh optimizer's empty "state" (every resume);
    the example the docs now give beside it restores one, Adam's moments and step counts exactly."""
    torch = pytest.importorskip("torch")
    from fabric_hpc.checkpoint import CheckpointError

    def build() -> tuple:
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, 10)

    model, opt, sched = build()
    for _ in range(3):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    save(tmp_path, {"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict()},
         step=3)
    model2, opt2, sched2 = build()
    with pytest.raises(CheckpointError, match="not a tensor target"):
        restore(tmp_path, into={"model": model2.state_dict(), "optim": opt2.state_dict(),
                                "sched": sched2.state_dict()})
    back = restore(tmp_path, into={"model": model2.state_dict(), "sched": sched2.state_dict()})
    opt2.load_state_dict(restore(tmp_path, names=["optim"], as_torch=True)["optim"])
    sched2.load_state_dict(back["sched"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert opt2.state_dict()["state"][0]["step"] == 3 and sched2.last_epoch == 3


@pytest.mark.parametrize("what", ["metadata", "layout"])
def test_a_nan_in_metadata_is_named_with_where_it_can_go(tmp_path: Path, what: str) -> None:
    """Before: "metadata must be a JSON object of plain values: Out of range float values are not JSON
    compliant", fix "pass numbers" (a NaN loss is a number to its writer), no key named."""
    from fabric_hpc.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=rf"{what}\.eval\.loss is NaN or infinite") as err:
        save(tmp_path / "ck", {"w": np.zeros(2)}, step=1, **{what: {"eval": {"loss": float("nan")}}})
    assert "state" in (err.value.hint or "") and not (tmp_path / "ck").exists()


def test_metadata_that_holds_itself_is_refused_as_before(tmp_path: Path) -> None:
    """The NaN naming walked a self-holding dict until RecursionError; json.dumps's refusal stays."""
    from fabric_hpc.checkpoint import CheckpointError

    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(CheckpointError, match="Circular reference detected"):
        save(tmp_path / "ck", {"w": np.zeros(2)}, step=1, metadata=loop)
    both: dict = {"loss": float("nan")}
    both["self"] = both
    with pytest.raises(CheckpointError, match="Circular reference|NaN or infinite"):
        save(tmp_path / "ck", {"w": np.zeros(2)}, step=1, metadata=both)
