"""`engine_options` of run_job / build_engine are checked: a typo, a wrong device or a string
where a bool belongs is a ConfigError with the fix, not a TypeError, AttributeError or ValueError
from inside torch, and never silently read as true."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import VirtualClock, build_engine, load_engine_config, run_job

from .builders import make_config, random_items, write_spool


@pytest.fixture(scope="module")
def torch_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("torch")
    from fabric_hpc.inference.engines import prepare_pytorch_engine

    return prepare_pytorch_engine(tmp_path_factory.mktemp("opt") / "tiny", preset="tiny", dtype="float32",
                                  max_batch_size=2, max_input_len=8, max_seq_len=16, max_num_tokens=16)


@pytest.mark.parametrize(("options", "match", "hint"), [
    ({"cuda_graph": False}, "'cuda_graph' is not an option of the pytorch engine \\(did you mean 'cuda_graphs'\\?\\)",
     "compile_decode, cuda_graphs, device, sdpa_cudnn, stop_at_eos"),
    ({"stop_at_eos": "no"}, "'stop_at_eos' of the pytorch engine must be true or false, not 'no'", "stop_at_eos=False"),
    ({"cuda_graphs": 1}, "must be true or false, not 1", "cuda_graphs=True"),
    ({"device": "gpu"}, "device='gpu' is not a device", "'cuda:N'"),
    ({"device": 0}, "device=0 is not a device", "'cpu'"),
])
def test_bad_pytorch_options_are_config_errors(torch_config: dict[str, Any], options: dict[str, Any],
                                               match: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_engine(load_engine_config(torch_config), **options)
    assert hint in (info.value.hint or "")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_a_cuda_device_without_cuda_says_so(torch_config: dict[str, Any], device: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this node has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available on this node") as info:
        build_engine(load_engine_config(torch_config), device=device)
    assert "device='cpu'" in (info.value.hint or "")


def test_valid_options_still_build(torch_config: dict[str, Any]) -> None:
    engine = build_engine(load_engine_config(torch_config), device="cpu", stop_at_eos=False, cuda_graphs=False)
    assert engine.device.type == "cpu"  # type: ignore[attr-defined]
    engine.close()


def test_run_job_checks_engine_options_before_writing_anything(tmp_path: Path) -> None:
    spool, cfg = write_spool(tmp_path, random_items(4, seed=3)), make_config(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'clock'"):
        run_job(cfg, str(spool), tmp_path / "out", engine_options={"clok": VirtualClock()})
    with pytest.raises(ConfigError, match="'local_rank' is set by the harness"):
        run_job(cfg, str(spool), tmp_path / "out", engine_options={"local_rank": 1})
    assert not (tmp_path / "out").exists()
    res = run_job(cfg, str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    assert res["items_done"] == 4
