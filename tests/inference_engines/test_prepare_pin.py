"""``fabric infer prepare`` pins the checkpoint step it serves (``ROOT/.pins``), so ``fabric ckpt prune``
keeps it; a new prepare of the same engine moves the pin; a step removed anyway is named with the
re-prepare command (a probe: prune removed the pinned step and every resume failed unexplained)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabric_hpc.checkpoint.errors import CheckpointNotFoundError
from fabric_hpc.checkpoint.pins import read_pins
from fabric_hpc.checkpoint.retention import RetentionPolicy, prune
from fabric_hpc.checkpoint.interop.hf import import_hf
from fabric_hpc.inference import build_engine, load_engine_config
from fabric_hpc.inference.engines import prepare_pytorch_engine

from .conftest import LIMITS


def test_prepare_pins_the_served_step_and_prune_keeps_it(hf_dir: Path, tmp_path: Path) -> None:
    ck, eng = tmp_path / "ck", tmp_path / "eng"
    import_hf(hf_dir, ck, step=12)
    prepare_pytorch_engine(eng, dtype="float32", checkpoint=ck, **LIMITS)
    import_hf(hf_dir, ck, step=24)
    res = prune(ck, RetentionPolicy(keep_last=1))
    assert res.removed == [] and res.pinned and set(res.pinned) == {12}
    assert (ck / "step-0000000012").is_dir()
    prepare_pytorch_engine(eng, dtype="float32", checkpoint=ck, **LIMITS)  # latest: 24, the pin moves
    pins, problems = read_pins(ck)
    assert [p.step for p in pins] == [24] and not problems
    assert prune(ck, RetentionPolicy(keep_last=1)).removed == [12]


def test_a_served_step_removed_anyway_names_the_re_prepare_command(hf_dir: Path, tmp_path: Path) -> None:
    ck, eng = tmp_path / "ck", tmp_path / "eng"
    import_hf(hf_dir, ck, step=12)
    cfg = prepare_pytorch_engine(eng, dtype="float32", checkpoint=ck, **LIMITS)
    import_hf(hf_dir, ck, step=24)
    shutil.rmtree(ck / "step-0000000012")  # by hand, past the pin
    with pytest.raises(CheckpointNotFoundError, match="checkpoint step 12 that .* was prepared from is gone") as err:
        build_engine(load_engine_config(cfg), device="cpu")
    assert f"fabric infer prepare {eng}" in err.value.hint
