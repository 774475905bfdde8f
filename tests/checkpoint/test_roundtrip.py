"""Format and round trips: every dtype and shape, bf16 lossless, plain zarr can read it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fabric_hpc.checkpoint import (
    CheckpointError, Shard, open_checkpoint, restore, save, verify,
)
from tests.checkpoint.builders import assert_same, full_state

torch = pytest.importorskip("torch")

NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64", "complex64", "complex128"]
TORCH_ONLY = [torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2]

_counter = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arr=hnp.arrays(st.sampled_from(NUMPY_DTYPES), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)),
       parts=st.integers(1, 4), split=st.booleans())
def test_numpy_roundtrip_every_dtype_and_shape(tmp_path: Path, arr: np.ndarray, parts: int, split: bool) -> None:
    root = tmp_path / str(next(_counter))
    chunks = None
    if split and arr.ndim:
        chunks = {"x": [max(1, -(-arr.shape[0] // parts)), *[max(1, s) for s in arr.shape[1:]]]}
    save(root, {"x": arr}, step=1, chunk_shapes=chunks)
    got = restore(root)["x"]
    assert got.dtype == arr.dtype and got.shape == arr.shape
    assert got.tobytes() == arr.tobytes()  # bitwise: NaN payloads and -0.0 survive
    plain = zarr.open_group(root / "step-0000000001", mode="r")["x"][...]
    assert plain.tobytes() == arr.tobytes()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(TORCH_ONLY + [torch.float32, torch.int32, torch.bool]),
       shape=st.lists(st.integers(0, 6), min_size=0, max_size=3))
def test_torch_roundtrip_including_bf16_and_fp8(tmp_path: Path, dtype: torch.dtype, shape: list[int]) -> None:
    root = tmp_path / str(next(_counter))
    t = (torch.randn(shape) * 100).to(dtype)
    save(root, {"t": t}, step=3)
    got = restore(root, as_torch=True)["t"]
    assert got.dtype == t.dtype and got.shape == t.shape
    assert got.reshape(-1).view(torch.uint8).tolist() == t.reshape(-1).view(torch.uint8).tolist()


def test_bf16_is_stored_as_uint16_with_real_dtype_attribute(tmp_path: Path) -> None:
    t = torch.tensor([1.5, -2.25, float("nan")], dtype=torch.bfloat16)
    res = save(tmp_path, {"a": {"b": t}}, step=1)
    arr = zarr.open_group(res.path, mode="r")["a/b"]
    assert arr.dtype == np.uint16
    assert arr.attrs["fabric"]["dtype"] == "bfloat16"
    assert np.array_equal(arr[:], t.view(torch.int16).numpy().view(np.uint16))


def test_nested_state_roundtrip_and_manifest(tmp_path: Path) -> None:
    state = full_state()
    res = save(tmp_path, state, step=100, layout={"tp": 1}, tags=["best"], metadata={"lr": 3e-4})
    assert_same(state, restore(tmp_path, as_torch=False))
    ck = open_checkpoint(tmp_path)
    assert ck.step == 100 and ck.manifest.world_size == 1 and ck.manifest.tags == ["best"]
    assert ck.manifest.user_metadata == {"lr": 3e-4}
    assert sorted(ck.names) == ck.names and "model/layers/0/w" in ck.names
    assert ck.manifest.nbytes == res.nbytes > 0
    # the manifest is plain JSON in the root group's attributes (no pickle anywhere)
    doc = json.loads((res.path / "zarr.json").read_text())
    assert doc["node_type"] == "group" and doc["attributes"]["fabric_checkpoint"]["step"] == 100
    group = zarr.open_group(res.path, mode="r")
    assert group["model/layers/1/b"][:].tobytes() == state["model"]["layers"]["1"]["b"].tobytes()


def test_permissions_are_private(tmp_path: Path) -> None:
    res = save(tmp_path / "ck", full_state(), step=1)
    for dirpath, dirs, files in os.walk(res.path):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for f in files:
            assert stat.S_IMODE(os.stat(Path(dirpath, f)).st_mode) == 0o600, f


@pytest.mark.parametrize("bad", ["../evil", "a/../../b", ".hidden", "__x", "a//b", "zarr.json", "a/c", "/abs"])
def test_names_cannot_escape_or_collide(tmp_path: Path, bad: str) -> None:
    with pytest.raises(CheckpointError, match="not allowed"):
        save(tmp_path, {bad: np.zeros(2)}, step=1)
    assert not any(p.name.startswith("step-") for p in tmp_path.iterdir())


def test_conj_and_neg_views_are_saved_as_their_values(tmp_path: Path) -> None:
    z = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64).conj()
    n = torch._neg_view(torch.tensor([1.0, 2.0]))
    save(tmp_path, {"z": z, "n": n}, step=1)
    got = restore(tmp_path)
    assert got["z"].tolist() == [1 - 2j, 3 + 1j] and got["n"].tolist() == [-1.0, -2.0]


@pytest.mark.parametrize("value, needle", [
    (lambda: torch.eye(3).to_sparse(), "tensor 'x/s' has layout sparse_coo"),
    (lambda: torch.eye(3).to_sparse_csr(), "tensor 'x/s' has layout sparse_csr"),
    (lambda: torch.empty(3, device="meta"), "tensor 'x/s' is on the meta device"),
    (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "tensor 'x/s' is a nested tensor"),
])
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning",
                            "ignore:The PyTorch API of nested tensors is in prototype:UserWarning")
def test_tensors_without_dense_bytes_are_refused_by_name(tmp_path: Path, value, needle: str) -> None:
    with pytest.raises(CheckpointError, match=needle) as info:
        save(tmp_path, {"x": {"s": value()}}, step=1)
    assert info.value.hint


@pytest.mark.parametrize("state, needle", [
    ({0: np.ones(1), "0": np.zeros(1)}, r"state entries \[0\] and \['0'\] both flatten to the tensor name '0'"),
    ({"a/b": np.ones(1), "a": {"b": np.zeros(1)}},
     r"state entries \['a'\]\['b'\] and \['a/b'\] both flatten to the tensor name 'a/b'"),
])
def test_two_entries_with_the_same_flattened_name_are_refused_by_key(tmp_path: Path, state: dict,
                                                                     needle: str) -> None:
    """It was "File exists ... retry" from deep inside the writer, a wrong fix."""
    with pytest.raises(CheckpointError, match=needle) as info:
        save(tmp_path, state, step=1)
    assert "rename one" in info.value.hint and not list(tmp_path.glob(".tmp-*"))


def test_tensor_and_group_with_same_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="both a tensor and a group"):
        save(tmp_path, {"a": np.zeros(2), "a/b": np.zeros(2)}, step=1)


def test_unsupported_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot save state\['x'\]: it is a set"):
        save(tmp_path, {"x": {1, 2}}, step=1)  # (lists of plain values are stored since the probe fixes)
    with pytest.raises(CheckpointError, match="not supported"):
        save(tmp_path, {"x": np.array(["a"])}, step=1)


def test_partial_restore_region_preallocated_and_cast(tmp_path: Path) -> None:
    state = full_state()
    w = state["model"]["layers"]["0"]["w"]
    save(tmp_path, {"model": {"layers": {"0": {"w": Shard.of(w, 0, 0, 1)}}}, "other": np.ones(3)}, step=1,
         chunk_shapes=None)
    part = restore(tmp_path, names=["model"])
    assert list(part) == ["model"]
    out = np.empty_like(w)
    got = restore(tmp_path, into={"model": {"layers": {"0": {"w": out}}}})
    assert got["model"]["layers"]["0"]["w"] is out and np.array_equal(out, w)
    as64 = restore(tmp_path, names=["model/layers/0/w"], dtype="float64")["model"]["layers"]["0"]["w"]
    assert as64.dtype == np.float64 and np.array_equal(as64, w.astype(np.float64))
    ck = open_checkpoint(tmp_path)
    region = ck.read("model/layers/0/w", region=((3, 7), (1, 4)))
    assert np.array_equal(region, w[3:7, 1:4])
    bf = ck.read("model/layers/0/w", dtype="bfloat16")
    assert bf.dtype == torch.bfloat16 and torch.equal(bf, torch.from_numpy(w).to(torch.bfloat16))


def test_restore_into_preallocated_bf16_tensor(tmp_path: Path) -> None:
    t = torch.randn(64, 32).to(torch.bfloat16)
    save(tmp_path, {"t": t}, step=1)
    out = torch.empty(64, 32, dtype=torch.bfloat16)
    restore(tmp_path, into={"t": out})
    assert torch.equal(out, t)


def test_region_reads_touch_only_needed_chunks(tmp_path: Path) -> None:
    w = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)
    save(tmp_path, {"w": w}, step=1, chunk_shapes={"w": [10, 6]})
    ck = open_checkpoint(tmp_path)
    os.remove(ck.path / "w" / "c.3.0")  # a chunk the region below does not need
    assert np.array_equal(ck.read("w", region=((12, 25), (0, 6))), w[12:25])
    assert not verify(tmp_path).ok


def test_mixed_split_layouts_in_one_process(tmp_path: Path) -> None:
    w = np.arange(10 * 7, dtype=np.int32).reshape(10, 7)
    save(tmp_path, {"w": w}, step=1, chunk_shapes={"w": [3, 4]})  # padded edges in both dims
    ck = open_checkpoint(tmp_path)
    for parts in (1, 2, 3, 5):
        for dim in (0, 1):
            pieces = [ck.read_shard("w", p, parts, dim=dim) for p in range(parts)]
            assert np.array_equal(np.concatenate(pieces, axis=dim), w)
    assert verify(tmp_path).ok


@pytest.mark.parametrize("kwargs,needle", [
    ({"metadata": {"x": np.zeros(2)}}, "metadata must be a JSON object"),
    ({"layout": {"tp": float("nan")}}, r"layout\.tp is NaN or infinite"),
    ({"tags": ["ok", 3]}, "tags must be a list of strings"),
    ({"tags": "best"}, "a single string is not a list of tags"),
    ({"tags": 5}, "tags must be a list of strings"),
    ({"step": -1}, "non-negative"),
    ({"step": 10**10}, "more than 10 digits"),
])
def test_bad_manifest_fields_fail_before_writing(tmp_path: Path, kwargs: dict, needle: str) -> None:
    args = {"step": 1, **kwargs}
    with pytest.raises(CheckpointError, match=needle):
        save(tmp_path, {"a": np.zeros(2)}, **args)
    assert not any(p.name.startswith(("step-", ".tmp-")) for p in tmp_path.iterdir()) if tmp_path.exists() else True


def test_tags_none_means_no_tags_like_layout_and_metadata_none(tmp_path: Path) -> None:
    res = save(tmp_path, {"a": np.zeros(2)}, step=1, tags=None, layout=None, metadata=None)
    assert open_checkpoint(res.path).manifest.tags == []


def test_hdf5_import_refuses_foreign_or_broken_files(tmp_path: Path) -> None:
    import h5py

    from fabric_hpc.checkpoint import CheckpointCorruptError
    from fabric_hpc.checkpoint.hdf5 import import_h5
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointCorruptError, match="not exported by fabric"):
        import_h5(tmp_path / "foreign.h5", tmp_path / "ck")
    with h5py.File(tmp_path / "broken.h5", "w") as f:
        f.attrs["fabric_checkpoint"] = "{\"format\": 1}"
    with pytest.raises(CheckpointCorruptError, match="not a valid manifest"):
        import_h5(tmp_path / "broken.h5", tmp_path / "ck")


def test_hdf5_import_refuses_data_changed_after_export(tmp_path: Path) -> None:
    """A bit flipped in a dataset after export is caught by the exported chunk checksums before
    anything is written (it must not be re-checksummed into a checkpoint that verifies)."""
    import h5py

    from fabric_hpc.checkpoint import CheckpointCorruptError
    from fabric_hpc.checkpoint.hdf5 import export_h5, import_h5
    w = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    save(tmp_path / "src", {"m": {"w": w, "b": np.ones(3, np.float32)}}, step=4, chunk_shapes={"m/w": [4, 7]})
    export_h5(tmp_path / "src", tmp_path / "ok.h5")
    import_h5(tmp_path / "ok.h5", tmp_path / "good")
    assert verify(tmp_path / "good").ok
    with h5py.File(tmp_path / "ok.h5", "r+") as f:
        f["m/w"][9, 6] = -1.0  # the padded edge chunk [2, 0]
    with pytest.raises(CheckpointCorruptError, match=r"'m/w' chunk \[2, 0\] does not match"):
        import_h5(tmp_path / "ok.h5", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").glob("step-*"))


def test_restore_dtype_casts_floats_only_and_integer_targets_never_wrap(tmp_path: Path) -> None:
    """dtype= casts the floating tensors only (a step of 16777217 stays exact, a mask stays
    bool); an integer target too narrow for the stored values is refused, not wrapped."""
    step = torch.tensor(16777217)
    save(tmp_path, {"w": torch.ones(2, dtype=torch.bfloat16), "step": step, "mask": torch.tensor([True, False]),
                    "i": np.array([300, -1, 2**40], np.int64)}, step=1)
    got = restore(tmp_path, dtype="float32")
    assert got["w"].dtype == np.float32 and got["step"].dtype == np.int64 and int(got["step"]) == 16777217
    assert got["mask"].dtype == np.bool_ and got["i"].tolist() == [300, -1, 2**40]
    with pytest.raises(CheckpointError, match="casts floating tensors only, got int8") as info:
        restore(tmp_path, names=["i"], dtype="int8")
    assert info.value.hint
    for target in (np.zeros(3, np.int8), np.zeros(3, np.int32), np.zeros(3, np.uint64), np.zeros(3, bool),
                   torch.zeros(3, dtype=torch.int16)):
        with pytest.raises(CheckpointError, match="i: the target's dtype .* cannot hold every stored int64"):
            restore(tmp_path, into={"i": target})
    wide = np.zeros(3, np.int64)
    assert restore(tmp_path, into={"i": wide})["i"] is wide and wide.tolist() == [300, -1, 2**40]


@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e5m2"])
def test_restore_refuses_an_fp8_dtype_instead_of_saturating(tmp_path: Path, fp8: str) -> None:
    """restore(dtype='float8_e4m3fn') cast 1e6 to 448 silently: a cast without scales is refused."""
    save(tmp_path, {"w": np.array([1e6, 1.0], np.float32)}, step=1)
    with pytest.raises(CheckpointError, match=f"cannot cast to {fp8}.*saturates") as info:
        restore(tmp_path, dtype=fp8, as_torch=True)
    assert "bfloat16" in info.value.hint


def test_library_misuse_is_a_checkpoint_error_not_a_raw_exception(tmp_path: Path) -> None:
    """Wrong types and values reach the public API from user code: each is a CheckpointError
    naming the problem, never a TypeError/IndexError from deep inside (or a silent truncation)."""
    from fabric_hpc.checkpoint import RetentionPolicy, open_checkpoint, prune, restore

    save(tmp_path / "ck", {"w": np.arange(4, dtype=np.float32), "n": np.arange(3)}, step=1)
    cases = [
        (lambda: restore(tmp_path / "ck", dtype="bogus"), "unknown dtype 'bogus'"),
        (lambda: restore(tmp_path / "ck", into=[1]), "into must be nested dicts"),
        (lambda: restore(tmp_path / "ck", into={"w": np.empty(4, np.int32)}), "cannot hold every stored float32"),
        (lambda: open_checkpoint(tmp_path / "ck").read("w", region=(slice(0, 2),)), "region must be"),
        (lambda: prune(tmp_path / "ck", {"keep_last": 1}), "policy must be a RetentionPolicy"),
    ]
    cases.append((lambda: save(tmp_path / "ck2", [np.zeros(2)], step=1), "must be nested dicts of arrays/tensors, got list"))
    (tmp_path / "afile").write_text("")
    cases.append((lambda: save(tmp_path / "afile", {"w": np.zeros(2)}, step=1), "exists and is not a directory"))
    for call, needle in cases:
        with pytest.raises(CheckpointError, match=needle):
            call()
    # precision casts and integer -> float targets stay allowed
    got = restore(tmp_path / "ck", into={"w": np.empty(4, np.float64), "n": np.empty(3, np.float32)})
    assert got["w"].tolist() == [0, 1, 2, 3] and got["n"].tolist() == [0, 1, 2]
    assert prune(tmp_path / "ck", RetentionPolicy(keep_last=1)) is not None
