"""`fabric infer prepare` writes only where it may: never over a user's file, never into a
checkpoint, and an engine directory or engine config it made before may be refreshed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engines.spec import PRESETS

from .builders import tiny_checkpoint

LIMITS = ["--dtype", "float32", "--max-batch-size", "8", "--max-input-len", "64", "--max-seq-len", "128",
          "--max-num-tokens", "512"]


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A tiny Llama checkpoint (step 0) carrying its Hugging Face config.json."""
    return tiny_checkpoint(tmp_path / "ck")


def prepare(engine_dir: Path, ckpt: Path, config_out: Path, *extra: str) -> int:
    return main(["infer", "prepare", str(engine_dir), "--checkpoint", str(ckpt), *LIMITS,
                 "--config-out", str(config_out), *extra])


def manifest_bytes(ckpt: Path) -> bytes:
    return (ckpt / "step-0000000000" / "zarr.json").read_bytes()


def test_a_users_directory_is_not_written_into(tmp_path: Path, ckpt: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A directory holding the user's config.json (or a whole Hugging Face model) had its
    config.json replaced by the checkpoint's, exit 0."""
    (tmp_path / "notempty").mkdir()
    (tmp_path / "notempty" / "config.json").write_text("important\n")
    assert prepare(tmp_path / "notempty", ckpt, tmp_path / "x.json") == 3
    assert (tmp_path / "notempty" / "config.json").read_text() == "important\n"
    assert sorted(p.name for p in (tmp_path / "notempty").iterdir()) == ["config.json"]
    assert not (tmp_path / "x.json").exists()
    assert "not written by prepare" in capsys.readouterr().err
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({**PRESETS["tiny"].hf_config(), "note": "mine"}))
    (hf / "model.safetensors").write_bytes(b"weights")
    before = (hf / "config.json").read_bytes()
    assert prepare(hf, ckpt, tmp_path / "x.json") == 3
    assert (hf / "config.json").read_bytes() == before and not (hf / "fabric_engine.json").exists()
    err = capsys.readouterr().err
    assert "is not empty and was not written by prepare" in err and "Traceback" not in err


def test_nothing_is_written_inside_a_checkpoint(tmp_path: Path, ckpt: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--config-out step-N/zarr.json replaced the manifest (ckpt verify: DAMAGED); ENGINE_DIR
    step-N got config.json and fabric_engine.json."""
    step = ckpt / "step-0000000000"
    before, files = manifest_bytes(ckpt), sorted(p.name for p in step.iterdir())
    for args in ((tmp_path / "eng", step / "zarr.json", "--force"), (tmp_path / "eng", step / "new.json"),
                 (step, tmp_path / "a.json"), (step / "sub", tmp_path / "b.json")):
        assert prepare(args[0], ckpt, *args[1:]) == 3
        assert "inside the checkpoint" in capsys.readouterr().err
    assert manifest_bytes(ckpt) == before and sorted(p.name for p in step.iterdir()) == files
    assert not (tmp_path / "eng").exists()  # checked before anything was written
    assert main(["ckpt", "verify", str(ckpt)]) == 0
    link = tmp_path / "link"
    link.symlink_to(step)  # through a symlink too
    assert prepare(link, ckpt, tmp_path / "c.json") == 3
    assert sorted(p.name for p in step.iterdir()) == files


def test_a_foreign_config_needs_force_and_prepares_own_output_is_refreshed(
        tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eng, cfg = tmp_path / "eng", tmp_path / "engine.json"
    assert prepare(eng, ckpt, cfg) == 0
    first = cfg.read_text()
    assert prepare(eng, ckpt, cfg) == 0  # its own config for the same ENGINE_DIR: refreshed (a new step)
    assert prepare(tmp_path / "other", ckpt, cfg) == 3  # but not for another engine directory
    err = capsys.readouterr().err
    assert "already exists and is not one prepare wrote" in err and "--force" in err
    cfg.write_text('{"engine": "pytorch"}')
    assert prepare(eng, ckpt, cfg) == 3 and cfg.read_text() == '{"engine": "pytorch"}'
    assert prepare(eng, ckpt, cfg, "--force") == 0  # eng holds fabric_engine.json: refreshed
    assert cfg.read_text() == first


def test_a_config_json_put_there_for_a_checkpoint_without_one_is_kept(tmp_path: Path) -> None:
    """The documented way to serve a checkpoint that carries no config.json: put the model's
    config.json into ENGINE_DIR first. That directory is not empty, and still accepted."""
    tiny_checkpoint(tmp_path / "bare", step=3, carry_config=False)
    (tmp_path / "eng").mkdir()
    (tmp_path / "eng" / "config.json").write_text(json.dumps(PRESETS["tiny"].hf_config()))
    assert prepare(tmp_path / "eng", tmp_path / "bare", tmp_path / "engine.json") == 0
    assert json.loads((tmp_path / "eng" / "fabric_engine.json").read_text())["checkpoint"]["step"] == 3


def test_the_python_api_refuses_the_same_targets(tmp_path: Path, ckpt: Path) -> None:
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    kw = {"dtype": "float32", "max_batch_size": 2, "max_input_len": 8, "max_seq_len": 16, "max_num_tokens": 16}
    with pytest.raises(ConfigError, match="inside the checkpoint"):
        prepare_pytorch_engine(ckpt / "step-0000000000", preset="tiny", **kw)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "fabric_engine.json").write_text("{}")
    with pytest.raises(ConfigError, match="was not written by prepare"):
        prepare_pytorch_engine(tmp_path / "mine", preset="tiny", **kw)
    assert (tmp_path / "mine" / "fabric_engine.json").read_text() == "{}"
    prepare_pytorch_engine(tmp_path / "eng", preset="tiny", **kw)
    prepare_pytorch_engine(tmp_path / "eng", preset="tiny", seed=1, **kw)  # its own: refreshed


@pytest.mark.parametrize(("input_len", "seq_len", "num_tokens", "message", "fix"), [
    (200, 128, 16, "max_input_len 200 is larger than max_seq_len 128", "raise max_seq_len to at least 200"),
    (100, 128, 16, "max_num_tokens 16 is smaller than max_input_len 100", "raise max_num_tokens to at least 100"),
])
def test_inconsistent_limits_are_refused_at_prepare(tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str],
                                                    input_len: int, seq_len: int, num_tokens: int, message: str,
                                                    fix: str) -> None:
    """--max-input-len 200 --max-seq-len 128 --max-num-tokens 16 was prepared (exit 0), then
    `infer run` dead-lettered 30 of 40 prompts. The rules are trtllm-build's without chunked
    context: max_input_len <= max_seq_len, max_num_tokens >= max_input_len."""
    args = ["infer", "prepare", str(tmp_path / "eng"), "--checkpoint", str(ckpt), "--dtype", "float32",
            "--max-batch-size", "8", "--max-input-len", str(input_len), "--max-seq-len", str(seq_len),
            "--max-num-tokens", str(num_tokens), "--config-out", str(tmp_path / "engine.json")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert message in err and fix in err
    assert not (tmp_path / "eng").exists() and not (tmp_path / "engine.json").exists()


def test_limits_at_the_edges_are_accepted(tmp_path: Path) -> None:
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    # equal lengths, and max_num_tokens above max_batch_size * max_seq_len (trtllm-build clamps it)
    prepare_pytorch_engine(tmp_path / "eng", preset="tiny", dtype="float32", max_batch_size=2, max_input_len=16,
                           max_seq_len=16, max_num_tokens=1024)


def test_a_step_beyond_any_checkpoint_step_is_a_usage_error(tmp_path: Path, ckpt: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--step takes what the ckpt commands take (0..9999999999), not any number."""
    assert prepare(tmp_path / "e", ckpt, tmp_path / "e.json", "--step", "100000000000") == 2
    assert "0<=x<=9999999999" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
