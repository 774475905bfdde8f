"""`fabric ckpt import-hf` reads the model's JSON files (the shard index, config.json,
generation_config.json) through fabric's input limits: a deeply nested, oversized, non-UTF-8 or
NaN-holding file is a CheckpointCorruptError naming the file, never a RecursionError traceback or a
whole-file read of any size. Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError
from fabric_hpc.checkpoint.interop.hf import INDEX, import_hf
from fabric_hpc.cli.main import main
from tests.real import require_real

try:
    import torch
    from safetensors.torch import save_file
except ImportError:  # pragma: no cover
    torch = None

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


def _model(d: Path, *, index: str | None = None, config: str | bytes | None = None) -> Path:
    d.mkdir()
    shard = "model-00001-of-00001.safetensors" if index is not None else "model.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(d / shard))
    if index is not None:
        (d / INDEX).write_text(index)
    if config is not None:
        (d / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    return d


@pytest.mark.parametrize("which", ["index", "config"])
def test_deeply_nested_json_is_a_corrupt_error_naming_the_file(tmp_path, capsys, which):
    if which == "index":
        src = _model(tmp_path / "m", index='{"weight_map": {"w": "model-00001-of-00001.safetensors"}, "x": '
                                           + DEEP + "}")
        name = INDEX
    else:
        src, name = _model(tmp_path / "m", config=DEEP), "config.json"
    with pytest.raises(CheckpointCorruptError, match=rf"{name}.*nested more than 64 levels"):
        import_hf(src, tmp_path / "out")
    assert main(["ckpt", "import-hf", str(src), str(tmp_path / "out2")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err and name in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("step-*"))


def test_an_oversized_config_is_refused_before_it_is_read(tmp_path):
    src = _model(tmp_path / "m")
    with open(src / "config.json", "wb") as f:
        f.truncate((64 << 20) + 1)  # sparse: nothing may read it whole
    with pytest.raises(CheckpointCorruptError, match=r"config\.json.*more than the limit"):
        import_hf(src, tmp_path / "out")


def test_non_utf8_and_nan_configs_name_the_file(tmp_path):
    src = _model(tmp_path / "a", config=b'\xff\xfe{"a": 1}')
    with pytest.raises(CheckpointCorruptError, match=r"config\.json.*not UTF-8"):
        import_hf(src, tmp_path / "out")
    # NaN in a model config is Python's json.dump output, carried (the engine judges the fields it
    # reads: tests/inference_engines/test_hf_config_nonfinite.py); in the shard index it is refused
    src = _model(tmp_path / "b", config='{"rope_theta": NaN}')
    import_hf(src, tmp_path / "out")
    src = _model(tmp_path / "c", index='{"weight_map": {"w": "model-00001-of-00001.safetensors"}, "x": NaN}')
    with pytest.raises(CheckpointCorruptError, match=r"index\.json.*NaN is not a valid JSON number"):
        import_hf(src, tmp_path / "out2")


def test_a_fifo_config_is_skipped_without_blocking_and_ordinary_files_import(tmp_path):
    src = _model(tmp_path / "m", config=json.dumps({"model_type": "llama", "hidden_size": 8}))
    (src / "generation_config.json").unlink(missing_ok=True)
    os.mkfifo(src / "generation_config.json")  # not a regular file: not carried, never opened
    res = import_hf(src, tmp_path / "out")
    assert res.step == 0
