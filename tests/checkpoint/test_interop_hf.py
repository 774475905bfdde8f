"""Hugging Face safetensors in and out: bit-exact round trips, sharding, a transformers model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError, list_checkpoints, open_checkpoint, restore, save, verify
from fabric_hpc.checkpoint.interop.hf import export_hf, import_hf
from fabric_hpc.checkpoint.format import SplitInfo
from tests.real import require_real

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError:  # pragma: no cover
    torch = None


@pytest.fixture(autouse=True)
def _need_torch() -> None:
    require_real("torch", torch is not None, "pip install '.[torch]'")


def _tensors() -> dict[str, "torch.Tensor"]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(32, 8, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.down_proj.weight": torch.randn(8, 16, generator=g),
        "model.norm.weight": torch.randn(8, generator=g).half(),
        "fp8.e4m3": torch.randn(4, 4, generator=g).to(torch.float8_e4m3fn),
        "fp8.e5m2": torch.randn(4, 4, generator=g).to(torch.float8_e5m2),
        "counts": torch.arange(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
    }


def _read_all(directory: Path) -> dict[str, bytes]:
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                out[k] = (str(t.dtype), tuple(t.shape), t.contiguous().view(torch.uint8).numpy().tobytes()
                          if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes())
    return out


def test_single_file_round_trip_is_bit_exact(tmp_path: Path) -> None:
    src = tmp_path / "hf"
    src.mkdir()
    save_file(_tensors(), str(src / "model.safetensors"), metadata={"format": "pt"})
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    res = import_hf(src, tmp_path / "ck", step=7)
    assert res.step == 7 and verify(tmp_path / "ck").ok
    m = open_checkpoint(tmp_path / "ck").manifest
    assert m.tensors["model.embed_tokens.weight"].dtype == "bfloat16"
    assert m.tensors["model.embed_tokens.weight"].stored_dtype == "uint16"
    assert m.user_metadata["hf_files"]["config.json"]["hidden_size"] == 8
    state = restore(tmp_path / "ck", as_torch=True)
    for k, t in _tensors().items():
        assert torch.equal(state[k].view(torch.uint8), t.view(torch.uint8)) if t.dim() else torch.equal(state[k], t)
    info = export_hf(tmp_path / "ck", tmp_path / "out")
    assert info["files"] == ["model.safetensors"]
    assert _read_all(tmp_path / "out") == _read_all(src)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_size"] == 8


def test_sharded_export_and_reimport_keep_every_crc(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    state = {"layers": {str(i): {"w": rng.standard_normal((64, 32)).astype(np.float32)} for i in range(5)},
             "bias": rng.standard_normal(32).astype(np.float32)}
    save(tmp_path / "ck", state, step=3, splits={"layers/4/w": SplitInfo(dim=0, parts=3)})  # 3 chunks, padded
    info = export_hf(tmp_path / "ck", tmp_path / "hf", max_shard_bytes=20_000)
    # 8320 + 8192 bytes fit under 20,000; three tensors do not
    assert len(info["files"]) == 3 and all((tmp_path / "hf" / f).stat().st_size < 20_000 + 512
                                           for f in info["files"])
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {f"layers.{i}.w" for i in range(5)} | {"bias"}
    assert index["metadata"]["total_size"] == 5 * 64 * 32 * 4 + 32 * 4
    import_hf(tmp_path / "hf", tmp_path / "back", step=3)
    a = open_checkpoint(tmp_path / "ck").manifest.tensors
    b = open_checkpoint(tmp_path / "back").manifest.tensors
    assert {n.replace("/", "."): e.chunks[0].crc32c for n, e in a.items() if n != "layers/4/w"} == \
        {n: e.chunks[0].crc32c for n, e in b.items() if n != "layers.4.w"}
    assert np.array_equal(restore(tmp_path / "back")["layers.4.w"], state["layers"]["4"]["w"])


def test_refusals_leave_nothing(tmp_path: Path) -> None:
    src = tmp_path / "hf"
    src.mkdir()
    save_file({"a": torch.ones(2), "b": torch.zeros(3)}, str(src / "x.safetensors"))
    (src / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "x.safetensors", "b": "x.safetensors", "c": "x.safetensors"}}))
    with pytest.raises(CheckpointCorruptError, match="names tensors no shard holds"):
        import_hf(src, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()  # the import created it, so a refusal removes it
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(CheckpointCorruptError, match="plain .safetensors file"):
        import_hf(src, tmp_path / "ck")
    save(tmp_path / "c2", {"a": {"b": np.ones(2)}, "a.b": np.ones(2)}, step=0)
    with pytest.raises(CheckpointError, match="same Hugging Face key"):
        export_hf(tmp_path / "c2", tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*.tmp"))


def test_export_of_a_manifest_declaring_a_huge_tensor_is_refused_before_allocating(tmp_path: Path) -> None:
    """The chunk files are checked against the manifest before the tensor is allocated (it was
    a MemoryError traceback)."""
    save(tmp_path / "ck", {"w": np.arange(4, dtype=np.float32), "ok": np.ones(2)}, step=1)
    manifest = tmp_path / "ck" / "step-0000000001" / "zarr.json"
    doc = json.loads(manifest.read_text())
    entry = doc["attributes"]["fabric_checkpoint"]["tensors"]["w"]
    entry["shape"], entry["chunk_shape"], entry["chunks"][0]["nbytes"] = [2**38], [2**38], 2**40
    manifest.write_text(json.dumps(doc))
    # the structural check (the array's zarr.json against the manifest) refuses it first, as restore does
    with pytest.raises(CheckpointCorruptError,
                       match=r"w/zarr.json: shape is \[4\], manifest says \[274877906944\]"):
        export_hf(tmp_path / "ck", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["header-json", "header-length", "truncated", "offsets"])
def test_a_malformed_safetensors_file_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    """safetensors' own errors become one CheckpointCorruptError naming the file; nothing is left."""
    src = tmp_path / "hf"
    src.mkdir()
    save_file({"w": torch.ones(4, 4)}, str(src / "model.safetensors"))
    raw = (src / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n]
    bad = {"header-json": raw[:8] + b"{" + header[1:].replace(b'"', b"'", 1) + raw[8 + n:],
           "header-length": (1 << 62).to_bytes(8, "little") + raw[8:],
           "truncated": raw[:5],
           "offsets": raw[:8] + header.replace(b"[0,64]", b"[0,99]") + raw[8 + n:]}[damage]
    (src / "model.safetensors").write_bytes(bad)
    with pytest.raises(CheckpointCorruptError, match="model.safetensors: not a readable safetensors file"):
        import_hf(src, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_transformers_model_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path / "hf", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    import_hf(tmp_path / "hf", tmp_path / "ck", step=1)
    export_hf(tmp_path / "ck", tmp_path / "out", max_shard_bytes=30_000)
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, back(ids).logits)


def test_cli_import_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main
    src = tmp_path / "hf"
    src.mkdir()
    save_file(_tensors(), str(src / "model.safetensors"), metadata={"format": "pt"})
    assert main(["ckpt", "import-hf", str(src), str(tmp_path / "ck"), "--step", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 5
    assert main(["ckpt", "export-hf", str(tmp_path / "ck"), str(tmp_path / "out"), "--max-shard-size", "1KiB"]) == 0
    assert len(json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["weight_map"]) == 8
    assert _read_all(tmp_path / "out") == _read_all(src)
    assert main(["ckpt", "export-hf", str(tmp_path / "ck"), str(tmp_path / "out")]) == 3
    assert "already exists" in capsys.readouterr().err
    assert main(["ckpt", "export-hf", str(tmp_path / "ck"), str(tmp_path / "o2"), "--max-shard-size", "5XB"]) == 2


def test_an_export_removes_the_temporaries_killed_exports_to_it_left(tmp_path: Path) -> None:
    """Only its own naming pattern, for the same destination, of processes no longer running."""
    import os
    import subprocess
    import sys

    from fabric_hpc.checkpoint.hdf5 import export_h5

    from fabric_hpc.atomic import _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    live = os.getppid()
    save(tmp_path / "ck", {"w": np.arange(4, dtype=np.float32)}, step=1)
    here = f"{_HOST}-{dead}-0badc0de.tmp"
    stale = [f".out.{here}", f".x.h5.{here}"]
    kept = [f".out.{_HOST}-{live}-0badc0de.tmp", f".x.h5.{_HOST}-{live}-0badc0de.tmp", f".other.{here}",
            f".x.h5.{here}.keep", f"out.{here}",
            f".out.other-node-{dead}-0badc0de.tmp"]  # another host's: its PID means nothing here
    (tmp_path / stale[0]).mkdir()
    (tmp_path / stale[0] / "model.safetensors").write_bytes(b"x" * 100)
    for name in stale[1:] + kept:
        (tmp_path / name).write_bytes(b"x")
    export_hf(tmp_path / "ck", tmp_path / "out")
    export_h5(tmp_path / "ck", tmp_path / "x.h5")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["ck", "out", "x.h5", *kept])
