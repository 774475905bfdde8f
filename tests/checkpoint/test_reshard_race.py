"""Two reshards of the same step into the same ``--out`` at once: the one that commits second finds
the step there. When it is exactly this reshard (verified), it succeeds as a rerun does
(``existing``); anything else is refused naming the difference and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, open_checkpoint, save, verify
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.reshard import reshard


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    state = {"model": {f"w{i}": Shard.of(rng.standard_normal((8, 4)).astype(np.float32), 0, 0, 1)
                       for i in range(3)}}
    save(tmp_path / "ck", state, step=4)
    return tmp_path / "ck"


def _racing(other: callable) -> callable:
    """A progress callback that runs ``other`` (the concurrent reshard) to its commit once, while
    this reshard is between tensors (its temporary step directory holds one tensor)."""
    ran = []

    def tick(_n: int) -> None:
        if not ran:
            ran.append(other())
    return tick


def test_the_same_reshard_committed_meanwhile_is_success(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "cc"
    res = reshard(ckpt, out, 2, progress=_racing(lambda: reshard(ckpt, out, 2)))
    assert res.existing and res.step == 4
    assert verify(out).ok and open_checkpoint(out).manifest.world_size == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step-")) == ["step-0000000004"]
    assert not [p for p in out.iterdir() if "tmp" in p.name]  # this reshard's partial copy is gone


def test_another_reshard_committed_meanwhile_is_refused_with_a_fix(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "cc"
    with pytest.raises(CheckpointError) as err:
        reshard(ckpt, out, 2, progress=_racing(lambda: reshard(ckpt, out, 3)))
    assert "already holds step 4" in err.value.message and "world size" in err.value.message
    assert err.value.hint and "--out" in err.value.hint
    assert open_checkpoint(out).manifest.world_size == 3  # the other one's, untouched


def test_a_save_racing_another_of_the_same_step_says_what_to_do(tmp_path: Path) -> None:
    """The writer's own commit race (two saves of one step into one root): the error is the typed one,
    names the checkpoint that won and says what to do."""
    from fabric_hpc.checkpoint.errors import CheckpointStepAppearedError
    root = tmp_path / "r"
    w = {"w": np.ones(4, np.float32)}
    with pytest.raises(CheckpointStepAppearedError) as err:
        save(root, w, step=2, _after_chunks=lambda: save(root, w, step=2))
    assert "appeared" in err.value.message and err.value.path == root / "step-0000000002"
    assert err.value.hint and "fabric ckpt verify" in err.value.hint
    assert verify(root).ok
