"""Every kind of bad tensor entry in a manifest is refused, with the message it always had (the
per-tensor checks were made faster for manifests with 100k+ tensors; none may be weakened)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from fabric_hpc.checkpoint.errors import CheckpointCorruptError
from fabric_hpc.checkpoint.format import ChunkEntry, Manifest, SplitInfo, TensorEntry, parse_manifest


def _doc() -> dict:
    a = {"path": "model/a", "shape": [4, 2], "dtype": "bfloat16", "stored_dtype": "uint16",
         "chunk_shape": [2, 2], "split": {"dim": 0, "parts": 2},
         "chunks": [{"index": [0, 0], "nbytes": 8, "crc32c": 1}, {"index": [1, 0], "nbytes": 8, "crc32c": 2}]}
    b = {"path": "model/b", "shape": [3], "dtype": "float32", "stored_dtype": "float32",
         "chunk_shape": [3], "chunks": [{"index": [0], "nbytes": 12, "crc32c": 3}]}
    return {"format": "fabric-checkpoint", "format_version": 1, "step": 1, "created_at": "x", "world_size": 1,
            "nbytes": 28, "tensors": {"model/a": a, "model/b": b}}


def _raw(manifest: dict) -> bytes:
    return json.dumps({"zarr_format": 3, "node_type": "group",
                       "attributes": {"fabric_checkpoint": manifest}}).encode()


def _set(where: str, value) -> Callable[[dict], None]:
    """A mutation: ``where`` is a path of keys/indices below ``tensors``; value None deletes it."""
    *parents, last = [int(k) if k.isdigit() else k for k in where.split(":")]

    def apply(doc: dict) -> None:
        node = doc["tensors"]
        for k in parents:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return apply


_DELETE = object()
A, B = "model/a", "model/b"
#: one mutation of a good manifest per kind of bad entry
CASES = {
    "entry-not-object": _set(B, [1, 2]),
    "missing-field": _set(f"{B}:chunks", _DELETE),
    "extra-field": _set(f"{B}:zip", 1),
    "path-not-str": _set(f"{B}:path", 5),
    "dtype-not-str": _set(f"{B}:dtype", None),
    "shape-not-list": _set(f"{B}:shape", "3"),
    "shape-float": _set(f"{B}:shape", [3.0]),
    "shape-bool": _set(f"{B}:shape", [True]),
    "chunk-shape-str": _set(f"{B}:chunk_shape", ["3"]),
    "split-not-object": _set(f"{A}:split", 0),
    "split-extra": _set(f"{A}:split:x", 1),
    "split-dim-str": _set(f"{A}:split:dim", "0"),
    "split-parts-float": _set(f"{A}:split:parts", 2.0),
    "chunks-not-list": _set(f"{B}:chunks", {}),
    "chunk-not-object": _set(f"{B}:chunks:0", 5),
    "chunk-extra": _set(f"{B}:chunks:0:x", 5),
    "chunk-missing": _set(f"{B}:chunks:0:crc32c", _DELETE),
    "chunk-index-not-list": _set(f"{B}:chunks:0:index", 0),
    "chunk-nbytes-str": _set(f"{B}:chunks:0:nbytes", "12"),
    "crc-negative": _set(f"{B}:chunks:0:crc32c", -1),
    "crc-too-big": _set(f"{B}:chunks:0:crc32c", 1 << 32),
    "crc-huge": _set(f"{B}:chunks:0:crc32c", 1 << 70),
    "bad-name": lambda d: d["tensors"].update({"../x": {**d["tensors"][B], "path": "../x"}}),
    "path-differs": _set(f"{B}:path", "model/c"),
    "unknown-dtype": _set(f"{B}:dtype", "float128"),
    "stored-dtype": _set(f"{B}:stored_dtype", "uint32"),
    "ndim-differs": _set(f"{B}:chunk_shape", [3, 1]),
    "too-many-dims": lambda d: d["tensors"][B].update(
        shape=[1] * 33, chunk_shape=[1] * 33, chunks=[{"index": [0] * 33, "nbytes": 4, "crc32c": 0}]),
    "dim-too-big": lambda d: d["tensors"][B].update(shape=[(1 << 40) + 1], chunk_shape=[1]),
    "dim-negative": _set(f"{B}:shape", [-3]),
    "chunk-dim-zero": _set(f"{B}:chunk_shape", [0]),
    "chunk-dim-too-big": _set(f"{B}:chunk_shape", [4]),
    "too-many-chunks": lambda d: d["tensors"][B].update(shape=[10_000_001], chunk_shape=[1]),
    "split-lengths": _set(f"{A}:split:dim", [0, 1]),
    "split-dims": _set(f"{A}:split:dim", 2),
    "split-dims-repeat": lambda d: d["tensors"][A]["split"].update(dim=[0, 0], parts=[2, 1]),
    "split-parts": _set(f"{A}:split:parts", 0),
    "split-chunk-shape": _set(f"{A}:split:parts", 4),
    "chunk-outside": _set(f"{B}:chunks:0:index", [1]),
    "chunk-index-length": _set(f"{B}:chunks:0:index", [0, 0]),
    "chunk-index-negative": _set(f"{B}:chunks:0:index", [-1]),
    "chunk-size": _set(f"{B}:chunks:0:nbytes", 11),
    "chunk-duplicate": _set(f"{A}:chunks:1:index", [0, 0]),
    "chunk-missing-from-grid": lambda d: d["tensors"][A]["chunks"].pop(),
    "chunk-extra-entry": lambda d: d["tensors"][B]["chunks"].append(dict(d["tensors"][B]["chunks"][0])),
    "tensors-not-object": lambda d: d.update(tensors=[]),
    "nbytes-null": _set(f"{B}:chunks:0:nbytes", None),
    "crc-bool": _set(f"{B}:chunks:0:crc32c", True),
    "shape-huge": _set(f"{B}:shape", [1 << 70]),
    "split-dim-list-of-str": _set(f"{A}:split:dim", ["0"]),
    "empty-name-and-group": lambda d: d["tensors"].update(
        {n: {**d["tensors"][B], "path": n} for n in ("", "/x")}),
    "tensor-and-group": lambda d: d["tensors"].update({"model": {**d["tensors"][B], "path": "model"}}),
}
#: what each case was refused with before the fast path (format.py at 964ef39): the reason after
#: "S: manifest is not valid: " (a str), or the problems after "S: manifest is inconsistent: " (a list)
EXPECTED = {
    "entry-not-object": "tensors.model/b: Input should be a valid dictionary or instance of TensorEntry",
    "missing-field": "tensors.model/b.chunks: Field required",
    "extra-field": "tensors.model/b.zip: Extra inputs are not permitted",
    "path-not-str": "tensors.model/b.path: Input should be a valid string",
    "dtype-not-str": "tensors.model/b.dtype: Input should be a valid string",
    "shape-not-list": "tensors.model/b.shape: Input should be a valid list",
    "shape-float": "tensors.model/b.shape.0: Input should be a valid integer",
    "shape-bool": "tensors.model/b.shape.0: Input should be a valid integer",
    "chunk-shape-str": "tensors.model/b.chunk_shape.0: Input should be a valid integer",
    "split-not-object": "tensors.model/a.split: Input should be a valid dictionary or instance of SplitInfo",
    "split-extra": "tensors.model/a.split.x: Extra inputs are not permitted",
    "split-dim-str": "tensors.model/a.split.dim.int: Input should be a valid integer; "
        "tensors.model/a.split.dim.list[int]: Input should be a valid list",
    "split-parts-float": "tensors.model/a.split.parts.int: Input should be a valid integer; "
        "tensors.model/a.split.parts.list[int]: Input should be a valid list",
    "chunks-not-list": "tensors.model/b.chunks: Input should be a valid list",
    "chunk-not-object": "tensors.model/b.chunks.0: Input should be a valid dictionary or instance of "
        "ChunkEntry",
    "chunk-extra": "tensors.model/b.chunks.0.x: Extra inputs are not permitted",
    "chunk-missing": "tensors.model/b.chunks.0.crc32c: Field required",
    "chunk-index-not-list": "tensors.model/b.chunks.0.index: Input should be a valid list",
    "chunk-nbytes-str": "tensors.model/b.chunks.0.nbytes: Input should be a valid integer",
    "crc-negative": "tensors.model/b.chunks.0.crc32c: crc32c -1 is not an unsigned 32-bit value",
    "crc-too-big": "tensors.model/b.chunks.0.crc32c: crc32c 4294967296 is not an unsigned 32-bit value",
    "crc-huge": "tensors.model/b.chunks.0.crc32c: crc32c 1180591620717411303424 is not an unsigned 32-bit "
        "value",
    "bad-name": [
        "tensor name '../x': part '..' is not allowed",
    ],
    "path-differs": [
        "model/b: path 'model/c' differs from its name",
    ],
    "unknown-dtype": [
        "model/b: unknown dtype 'float128'",
    ],
    "stored-dtype": [
        "model/b: stored dtype 'uint32' does not match 'float32'",
    ],
    "ndim-differs": [
        "model/b: bad shape [3] / chunk shape [3, 1] (at most 32 dimensions of at most 1,099,511,627,776; "
        "each chunk dimension 1..that dimension)",
    ],
    "too-many-dims": [
        "model/b: bad shape [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
        "1, 1, 1, 1, 1, 1, 1] / chunk shape [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
        "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] (at most 32 dimensions of at most 1,099,511,627,776; each chunk "
        "dimension 1..that dimension)",
    ],
    "dim-too-big": [
        "model/b: bad shape [1099511627777] / chunk shape [1] (at most 32 dimensions of at most "
        "1,099,511,627,776; each chunk dimension 1..that dimension)",
    ],
    "dim-negative": [
        "model/b: bad shape [-3] / chunk shape [3] (at most 32 dimensions of at most 1,099,511,627,776; "
        "each chunk dimension 1..that dimension)",
    ],
    "chunk-dim-zero": [
        "model/b: bad shape [3] / chunk shape [0] (at most 32 dimensions of at most 1,099,511,627,776; each "
        "chunk dimension 1..that dimension)",
    ],
    "chunk-dim-too-big": [
        "model/b: bad shape [3] / chunk shape [4] (at most 32 dimensions of at most 1,099,511,627,776; each "
        "chunk dimension 1..that dimension)",
    ],
    "too-many-chunks": [
        "model/b: more than 10,000,000 chunks",
    ],
    "split-lengths": [
        "model/a: split dims [0, 1] and parts [2] differ in length",
    ],
    "split-dims": [
        "model/a: split dims [2] are not distinct dimensions of a 2-d tensor",
    ],
    "split-dims-repeat": [
        "model/a: split dims [0, 0] are not distinct dimensions of a 2-d tensor",
    ],
    "split-parts": [
        "model/a: split parts [0] must be >= 1",
    ],
    "split-chunk-shape": [
        "model/a: chunk shape [2, 2] does not match its split (dim 0, parts 4 of shape [4, 2] give chunk "
        "shape [1, 2])",
    ],
    "chunk-outside": [
        "model/b: chunk index [1] outside the grid [1]",
    ],
    "chunk-index-length": [
        "model/b: chunk index [0, 0] outside the grid [1]",
    ],
    "chunk-index-negative": [
        "model/b: chunk index [-1] outside the grid [1]",
    ],
    "chunk-size": [
        "model/b: chunk [0] size 11 != 12",
    ],
    "chunk-duplicate": [
        "model/a: 2 chunks listed, grid needs 2",
    ],
    "chunk-missing-from-grid": [
        "model/a: 1 chunks listed, grid needs 2",
    ],
    "chunk-extra-entry": [
        "model/b: 2 chunks listed, grid needs 1",
    ],
    "tensors-not-object": "tensors: Input should be a valid dictionary",
    "nbytes-null": "tensors.model/b.chunks.0.nbytes: Input should be a valid integer",
    "crc-bool": "tensors.model/b.chunks.0.crc32c: Input should be a valid integer",
    "shape-huge": [
        "model/b: bad shape [1180591620717411303424] / chunk shape [3] (at most 32 dimensions of at most "
        "1,099,511,627,776; each chunk dimension 1..that dimension)",
    ],
    "split-dim-list-of-str": "tensors.model/a.split.dim.int: Input should be a valid integer; "
        "tensors.model/a.split.dim.list[int].0: Input should be a valid integer",
    "empty-name-and-group": [
        "tensor name '': part '' is not allowed",
        "tensor name '/x': part '' is not allowed",
        "'' is both a tensor and a group of '/x'",
    ],
    "tensor-and-group": [
        "'model' is both a tensor and a group of 'model/a'",
        "'model' is both a tensor and a group of 'model/b'",
    ],
}


def _padded(doc: dict, n: int = 300) -> dict:
    """The manifest with ``n`` more good tensors before and after its own (a bad entry among many)."""
    good = doc["tensors"].get("model/b") or _doc()["tensors"]["model/b"]
    pad = {f"pad{i}/w": {**copy.deepcopy(good), "path": f"pad{i}/w"} for i in range(n)}
    if not isinstance(doc["tensors"], dict):
        return doc
    return {**doc, "tensors": {**dict(list(pad.items())[:n // 2]), **doc["tensors"],
                               **dict(list(pad.items())[n // 2:])}}


@pytest.mark.parametrize("padded", [False, True], ids=["alone", "among-300"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_bad_entry_is_refused_with_its_message(case: str, padded: bool) -> None:
    doc = _doc()
    if padded:
        doc = _padded(doc)
        if case in ("missing-field", "extra-field", "chunk-extra-entry"):  # the pads copy model/b
            doc["tensors"]["model/b"] = copy.deepcopy(_doc()["tensors"]["model/b"])
    CASES[case](doc)
    with pytest.raises(CheckpointCorruptError) as err:
        parse_manifest(_raw(doc), "S")
    want = EXPECTED[case]
    if isinstance(want, str):
        assert err.value.message == f"S: manifest is not valid: {want}"
        assert err.value.problems == [err.value.message]
    else:
        assert err.value.message == "S: manifest is inconsistent: " + "; ".join(want[:5])
        assert err.value.problems == want
    assert err.value.hint == "run `fabric ckpt verify` and restore an older step"


def test_a_good_manifest_parses_to_what_the_models_validate() -> None:
    doc = _padded(_doc(), 20)
    doc["tensors"]["model/a"]["split"] = {"dim": [0, 1], "parts": [2, 1]}
    doc["format_version"] = 2
    got = parse_manifest(_raw(doc), "S")
    want = Manifest.model_validate(copy.deepcopy(doc))
    assert got == want
    assert got.model_dump(mode="json") == want.model_dump(mode="json")
    assert got.model_dump(mode="json", exclude_unset=True) == doc
    a, b = got.tensors["model/a"], got.tensors["model/b"]
    assert isinstance(a, TensorEntry) and isinstance(a.split, SplitInfo) and a.split.dims == [0, 1]
    assert all(isinstance(c, ChunkEntry) for e in got.tensors.values() for c in e.chunks)
    assert b.split is None and "split" not in b.model_fields_set
    with pytest.raises(Exception, match="frozen"):
        b.dtype = "float64"  # type: ignore[misc]
