"""PyTorch DCP in and out, with real multi-process torch.distributed jobs (gloo) on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, list_checkpoints, open_checkpoint, restore, save, verify
from fabric_hpc.checkpoint.format import SplitInfo
from tests.real import require_real

# DCP saved by one process without torch.distributed, on purpose (its interop without a process group)
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled, unavailable or uninitialized")

try:
    import torch
    import torch.multiprocessing as mp
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None and torch.distributed.is_available(), "pip install '.[torch]'")


def _spawn(fn: object, world: int, tmp_path: Path, *args: str) -> None:
    init = f"file://{tmp_path}/pg-{fn.__name__}-{world}"
    mp.spawn(fn, args=(world, init, *args), nprocs=world, join=True)


def _bits(t: "torch.Tensor") -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dim() else t.numpy().tobytes()


def test_import_sharded_dcp_written_by_two_ranks(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.interop.dcp import import_dcp
    from tests.checkpoint import dcp_worker
    _spawn(dcp_worker.save_sharded, 2, tmp_path, str(tmp_path / "dcp"))
    with pytest.raises(CheckpointError, match="pickle") as err:
        import_dcp(tmp_path / "dcp", tmp_path / "ck")
    assert "--trust-pickle" in str(err.value) and not (tmp_path / "ck").exists()
    res = import_dcp(tmp_path / "dcp", tmp_path / "ck", trust_pickle=True, step=4)
    assert res.step == 4 and verify(tmp_path / "ck").ok
    m = open_checkpoint(tmp_path / "ck").manifest
    assert m.tensors["model.w"].split.model_dump() == {"dim": 0, "parts": 2}
    assert m.tensors["model.emb"].split.model_dump() == {"dim": 1, "parts": 2}
    assert m.tensors["bias"].split is None and m.tensors["model.emb"].dtype == "bfloat16"
    full = dcp_worker.full_state()
    state = restore(tmp_path / "ck", as_torch=True)
    assert _bits(state["model.w"]) == _bits(full["w"]) and _bits(state["model.emb"]) == _bits(full["emb"])
    assert torch.equal(state["bias"], full["bias"])
    part = restore(tmp_path / "ck", as_torch=True, rank=1, world_size=2)
    assert torch.equal(part["model.w"], full["w"][5:])


def test_export_loads_on_another_world_size(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.interop.dcp import export_dcp
    from tests.checkpoint import dcp_worker
    rng = np.random.default_rng(0)
    w = rng.standard_normal((9, 4)).astype(np.float32)
    emb = torch.randn(6, 5).to(torch.bfloat16)
    # w laid out as 2 tensor-parallel parts (two chunk files, the last padded)
    save(tmp_path / "ck", {"model": {"w": w, "emb": emb}, "step": np.array(7)}, step=3,
         splits={"model/w": SplitInfo(dim=0, parts=2)})
    info = export_dcp(tmp_path / "ck", tmp_path / "dcp")
    assert info["tensors"] == 3 and (tmp_path / "dcp" / ".metadata").is_file()
    torch.save({"model.w": torch.from_numpy(w), "model.emb": emb, "step": torch.tensor(7)}, tmp_path / "want.pt")
    _spawn(dcp_worker.load_sharded, 3, tmp_path, str(tmp_path / "dcp"), str(tmp_path / "want.pt"))
    with pytest.raises(CheckpointError, match="already exists"):
        export_dcp(tmp_path / "ck", tmp_path / "dcp")


def test_cli_refuses_without_trust_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main
    save(tmp_path / "ck", {"a": np.arange(4.0)}, step=1)
    assert main(["ckpt", "export-dcp", str(tmp_path / "ck"), str(tmp_path / "dcp"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == 1
    assert main(["ckpt", "import-dcp", str(tmp_path / "dcp"), str(tmp_path / "back")]) == 3
    err = capsys.readouterr().err
    assert "pickle" in err and "--trust-pickle" in err and not list_checkpoints(tmp_path / "ck")[1:]
    assert main(["ckpt", "import-dcp", str(tmp_path / "dcp"), str(tmp_path / "back"), "--trust-pickle"]) == 0
    assert "arbitrary code" in capsys.readouterr().err
    assert np.array_equal(restore(tmp_path / "back")["a"], np.arange(4.0))


def test_objects_refused_unless_skipped(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter

    from fabric_hpc.checkpoint.interop.dcp import import_dcp
    dcp.save({"w": torch.ones(3), "extra": {"lr": 0.1, "names": ["a"]}},
             storage_writer=FileSystemWriter(str(tmp_path / "dcp")), no_dist=True)
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        import_dcp(tmp_path / "dcp", tmp_path / "ck", trust_pickle=True)
    assert "--skip-objects" in str(err.value) and not (tmp_path / "ck").exists()
    import_dcp(tmp_path / "dcp", tmp_path / "ck", trust_pickle=True, skip_objects=True)
    m = open_checkpoint(tmp_path / "ck").manifest
    assert list(m.tensors) == ["w"] and m.user_metadata["skipped_objects"] == ["extra.lr", "extra.names"]


def test_direct_read_equals_dcp_load_and_damage_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path (each chunk loaded from its file slice, several tensors at a time) writes
    the same checkpoint as DCP's own dcp.load; a truncated data file is refused, nothing committed."""
    import torch.distributed.checkpoint as dcp

    from fabric_hpc.checkpoint.interop import dcp as mod
    g = torch.Generator().manual_seed(3)
    state = {"a": torch.randn(40, 30, generator=g), "b": torch.randn(7, generator=g).to(torch.bfloat16),
             "ids": torch.arange(12).reshape(3, 4), "s": torch.tensor(2.5), "e": torch.empty(0, 3),
             "v": torch.randn(10, 10, generator=g)[2:5]}  # a view: torch.save keeps its whole storage
    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(tmp_path / "dcp")), no_dist=True)
    direct = mod.import_dcp(tmp_path / "dcp", tmp_path / "direct", trust_pickle=True)
    md = mod.read_dcp_metadata(tmp_path / "dcp", trust_pickle=True)
    assert set(mod._direct_items(tmp_path / "dcp", md, md.state_dict_metadata)) >= {"a", "b", "ids", "s", "v"}
    monkeypatch.setattr(mod, "_direct_items", lambda *a: {})
    loaded = mod.import_dcp(tmp_path / "dcp", tmp_path / "viaload", trust_pickle=True)
    monkeypatch.undo()
    got = restore(direct.path, as_torch=True)
    assert open_checkpoint(direct.path).manifest.tensors == open_checkpoint(loaded.path).manifest.tensors
    for k, t in state.items():
        assert got[k].shape == t.shape and _bits(got[k]) == _bits(t)
    data = next(p for p in (tmp_path / "dcp").iterdir() if p.suffix == ".distcp")
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        mod.import_dcp(tmp_path / "dcp", tmp_path / "broken", trust_pickle=True)
    assert not (tmp_path / "broken").exists()
    data.unlink()
    with pytest.raises(CheckpointError, match=f"data file {data.name} named in .metadata is missing"):
        mod.import_dcp(tmp_path / "dcp", tmp_path / "broken", trust_pickle=True)
    (tmp_path / "dcp" / ".metadata").write_bytes(b"garbage\n")
    with pytest.raises(CheckpointError, match="not a readable DCP metadata file"):
        mod.import_dcp(tmp_path / "dcp", tmp_path / "broken", trust_pickle=True)
    assert not (tmp_path / "broken").exists()


def test_export_refuses_damaged_or_linked_chunks(tmp_path: Path) -> None:
    """The CRCs checked while torch writes: a flipped byte or a symlinked chunk file leaves no OUT."""
    from fabric_hpc.checkpoint import CheckpointCorruptError
    from fabric_hpc.checkpoint.interop.dcp import export_dcp
    save(tmp_path / "ck", {"w": np.arange(4096, dtype=np.float32).reshape(64, 64), "b": np.ones(3)}, step=1)
    chunk = tmp_path / "ck" / "step-0000000001" / "w" / "c.0.0"
    good = chunk.read_bytes()
    chunk.write_bytes(good[:50] + bytes([good[50] ^ 1]) + good[51:])
    with pytest.raises(CheckpointCorruptError, match="w/c.0.0"):
        export_dcp(tmp_path / "ck", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list((tmp_path).glob(".out.*.tmp"))
    (tmp_path / "elsewhere").write_bytes(good)
    chunk.unlink()
    chunk.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointCorruptError, match="w/c.0.0"):
        export_dcp(tmp_path / "ck", tmp_path / "out")
    assert not (tmp_path / "out").exists()
