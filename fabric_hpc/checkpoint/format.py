"""The on-disk format: manifest models, dtype mapping, names, and Zarr v3 metadata.

A checkpoint is a directory holding a plain Zarr v3 group. Every tensor is a Zarr array (bytes
codec, little endian, no compression) at the path given by its flattened name, plus
the manifest in the root group's ``zarr.json`` attributes. See ``docs/checkpoint-format.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import field_validator, model_validator

from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError, CheckpointNewerFormatError
from fabric_hpc.checkpoint.values import is_tensor_like
from fabric_hpc.validation import StrictModel

FORMAT_NAME = "fabric-checkpoint"
FORMAT_VERSION = 3  # the newest version this code reads; writers write the lowest that fits
MANIFEST = "zarr.json"  # the manifest lives in the root group's attributes
ATTR = "fabric_checkpoint"
#: the non-tensor leaves (format version 3) sit in this sibling attribute of the root zarr.json, so
#: a version-2 reader still parses the manifest and refuses it as NEWER FORMAT
VALUES_ATTR = "fabric_checkpoint_values"
#: who wrote the checkpoint (optional, informational; readers that do not know it ignore it)
PROVENANCE_ATTR = "fabric_checkpoint_provenance"
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
MAX_PART = 200  # characters in one name part (_PART)

#: Limits a manifest is checked against before anything is allocated for it.
MAX_NDIM = 32
MAX_DIM = 1 << 40
MAX_CHUNKS = 10_000_000
#: the largest step a directory name holds (``step-`` and ten digits: what readers, the Slurm
#: agent's checkpoint-time reader and the tiers look for)
MAX_STEP = 10**10 - 1

# numpy-native dtypes stored as themselves (zarr v3 core data types)
NATIVE_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
)
# dtypes zarr cannot store: kept as an unsigned view of the same width (lossless)
VIEW_DTYPES = {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}
#: the fp8 dtypes (stored as uint8 views; meaningful only with their scales)
FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2")


class ChunkEntry(StrictModel):
    """One chunk file: its grid index, stored size in bytes and crc32c of those bytes."""

    index: list[int]
    nbytes: int
    crc32c: int

    @field_validator("crc32c")
    @classmethod
    def _crc_is_32_bits(cls, v: int) -> int:
        if not 0 <= v < 1 << 32:
            raise ValueError(f"crc32c {v} is not an unsigned 32-bit value")
        return v


class SplitInfo(StrictModel):
    """How the writer partitioned a tensor: along ``dim`` into ``parts`` (torch.chunk style).
    A tensor split over several dimensions (a device mesh, e.g. tensor x sequence parallel)
    lists them: ``dim=[0, 1], parts=[2, 4]`` (format version 2)."""

    dim: int | list[int]
    parts: int | list[int]

    @classmethod
    def of(cls, dims: Sequence[int], parts: Sequence[int]) -> SplitInfo:
        """Scalars for a one-dimension split (format version 1), lists otherwise."""
        if len(dims) == 1:
            return cls(dim=int(dims[0]), parts=int(parts[0]))
        return cls(dim=[int(d) for d in dims], parts=[int(p) for p in parts])

    @property
    def dims(self) -> list[int]:
        return [self.dim] if isinstance(self.dim, int) else list(self.dim)

    @property
    def mesh(self) -> list[int]:
        return [self.parts] if isinstance(self.parts, int) else list(self.parts)

    def problems(self, ndim: int) -> list[str]:
        dims, mesh = self.dims, self.mesh
        if len(dims) != len(mesh) or not dims:
            return [f"split dims {dims} and parts {mesh} differ in length"]
        if len(set(dims)) != len(dims) or any(not 0 <= d < ndim for d in dims):
            return [f"split dims {dims} are not distinct dimensions of a {ndim}-d tensor"]
        if any(p < 1 for p in mesh):
            return [f"split parts {mesh} must be >= 1"]
        return []

    def chunk_shape(self, shape: Sequence[int]) -> list[int]:
        """The chunk shape that gives every part one chunk file."""
        chunks = [max(1, s) for s in shape]
        for d, p in zip(self.dims, self.mesh):
            chunks[d] = max(1, math.ceil(shape[d] / p))
        return chunks


class TensorEntry(StrictModel):
    """A tensor in the index: logical dtype, what zarr stores, its grid and every chunk."""

    path: str
    shape: list[int]
    dtype: str
    stored_dtype: str
    chunk_shape: list[int]
    split: SplitInfo | None = None
    chunks: list[ChunkEntry]


class ValueLeaves(StrictModel):
    """The non-tensor leaves of a save (``checkpoint.values`` encoding) and the key paths whose
    int keys (``optim/state/0``) become ints again on restore (format version 3)."""

    leaves: dict[str, Any] = {}
    int_keys: list[list[str | int]] = []

    @field_validator("leaves")
    @classmethod
    def _decodable(cls, v: dict[str, Any]) -> dict[str, Any]:
        from fabric_hpc.checkpoint.values import decode
        for name, doc in v.items():
            check_name(name)
            try:
                decode(doc)
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return v

    @field_validator("int_keys")
    @classmethod
    def _key_paths(cls, v: list[list[str | int]]) -> list[list[str | int]]:
        if [] in v:  # strict mode refuses items other than str and int (a bool too)
            raise ValueError("an int_keys path is empty (each names the keys down to an int key)")
        return v


class Provenance(StrictModel):
    """Who saved the checkpoint, where and when (``saved_at``: ISO 8601 UTC, microseconds). Each
    field may be missing (None): a save outside Slurm has no job id."""

    host: str | None = None
    user: str | None = None
    slurm_job_id: str | None = None
    saved_at: str | None = None


class Manifest(StrictModel):
    """The checkpoint's manifest (root ``zarr.json``, attribute ``fabric_checkpoint``). Values no
    writer can produce (format version 0, world size 0, a negative step or size) are refused here,
    so verify calls such a manifest damaged and no restore uses it."""

    format: Literal["fabric-checkpoint"]
    format_version: int
    step: int
    created_at: str
    world_size: int
    layout: dict[str, Any] = {}
    tags: list[str] = []
    user_metadata: dict[str, Any] = {}
    nbytes: int
    tensors: dict[str, TensorEntry]
    values: ValueLeaves | None = None  # on disk: the VALUES_ATTR attribute, not inside ATTR

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v < 1:  # a newer version than this code reads is refused by parse_manifest (upgrade)
            raise ValueError(f"{v} is not a format version (versions start at 1; this fabric-hpc reads "
                             f"1..{FORMAT_VERSION})")
        return v

    @field_validator("layout", "user_metadata")
    @classmethod
    def _not_too_deep(cls, v: dict[str, Any]) -> dict[str, Any]:
        from fabric_hpc.checkpoint.values import MAX_VALUE_DEPTH, nests_too_deep
        if any(nests_too_deep(x) for x in v.values()):
            raise ValueError(f"lists and dicts nest more than {MAX_VALUE_DEPTH} levels deep (no save "
                             "writes that)")
        return v

    @field_validator("step")
    @classmethod
    def _step_in_range(cls, v: int) -> int:
        if not 0 <= v <= MAX_STEP:
            raise ValueError(f"step {v} is outside 0..{MAX_STEP} (what a step-NNNNNNNNNN name holds)")
        return v

    @model_validator(mode="after")
    def _leaves_apart(self) -> Manifest:
        """A non-tensor leaf named like a tensor, or nesting with one, would replace or merge it on
        restore (a save refuses such a state too)."""
        from fabric_hpc.checkpoint.manifest_checks import leaf_clashes
        if self.values is not None and (clashes := leaf_clashes(self.tensors, self.values.leaves)):
            raise ValueError("; ".join(clashes[:5]))
        return self

    @field_validator("world_size")
    @classmethod
    def _some_ranks(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"world size {v}: a checkpoint is saved by at least one rank")
        return v

    @field_validator("nbytes")
    @classmethod
    def _size(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"size {v} is negative")
        return v


def parse_provenance(raw: bytes) -> Provenance | None:
    """Who saved a checkpoint (its root zarr.json's bytes), or None when not recorded (a save before
    2026-12) or not understood: it is informational, so a damaged one never makes a checkpoint
    unreadable, and the fields this code does not know are ignored."""
    try:
        doc = json.loads(raw).get("attributes", {}).get(PROVENANCE_ATTR)
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    known = {k: v for k, v in doc.items()
             if k in Provenance.model_fields and (v is None or isinstance(v, str))}
    return Provenance(**known) if known else None


def check_name(name: str, what: str = "tensor") -> list[str]:
    """Split a flattened tensor name into path parts, refusing anything that could escape the
    checkpoint directory or collide with zarr's own keys (``what``: "tensor", or "value" for the
    name of a non-tensor leaf, which follows the same rules)."""
    parts = name.split("/")
    for part in parts:
        if not _PART.match(part) or part in (".", "..") or part.startswith("__") or part == "c" or part.startswith("c.") \
                or part == "zarr.json":
            more = ("; any keys are kept as they are inside a dict that holds no tensors (e.g. "
                    "{'cfg': {'model name': ...}})") if what == "value" else ""
            raise CheckpointError(
                f"{what} name {name!r}: part {part!r} is not allowed",
                hint="use letters, digits, '_', '.', '-' (not starting with '.', '-' or '__', "
                     f"not 'c' or 'zarr.json'), parts joined by '/'{more}")
    return parts


def flatten(state: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts -> ("a/b/c", leaf) pairs in sorted, stable order (an int key becomes its
    string; :func:`flatten_keyed` gives the keys too, so a save can restore them as ints). A key
    of a tensor holding '/' nests like a dict ("a/b" names what {"a": {"b": ...}} does); a value's
    is refused; two entries that end up with the same name are refused, naming both. A dict that
    holds no tensor (an empty one too) is one leaf: a non-tensor value, its keys kept verbatim."""
    for name, _, value in flatten_keyed(state, prefix):
        yield name, value


def flatten_keyed(state: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, tuple, Any]]:
    """:func:`flatten` with each leaf's key path: ("optim/state/0/exp_avg", ("optim", "state", 0,
    "exp_avg"), tensor)."""
    seen: dict[str, tuple] = {}
    for name, keys, value in _walk(state, prefix, ()):
        if name in seen:
            raise CheckpointError(f"state entries {_key_path(seen[name])} and {_key_path(keys)} both flatten to "
                                  f"the tensor name {name!r}",
                                  hint="rename one: int keys are stored as strings (0 and '0' clash) and "
                                       "a '/' in a key nests it ('a/b' is the name of {'a': {'b': ...}})")
        seen[name] = keys
        yield name, keys, value


def _key_path(keys: tuple) -> str:
    return "".join(f"[{k!r}]" for k in keys)


def str_key(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _walk(state: Mapping[str, Any], prefix: str, keys: tuple) -> Iterator[tuple[str, tuple, Any]]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"the state {'under ' + repr(prefix) + ' ' if prefix else ''}must be nested dicts "
                              f"of arrays/tensors, got {type(state).__name__}",
                              hint="e.g. {'model': model.state_dict(), 'optim': {...}}; put a list's items under keys")
    for key in sorted(state, key=str):
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise CheckpointError(f"state key {key!r} at state{_key_path(keys)} is a {type(key).__name__}; "
                                  "keys must be str or int",
                                  hint=f"use a string key, e.g. {str_key(key)!r}")
        name = f"{prefix}/{key}" if prefix else str(key)
        value = state[key]
        if isinstance(value, Mapping) and value and holds_tensor(value):
            yield from _walk(value, name, (*keys, key))
        elif is_tensor_like(value):
            check_name(name)
            yield name, (*keys, key), value
        else:  # a plain value, or a dict holding no tensors: one value (its own keys kept verbatim)
            if isinstance(key, str) and "/" in key:
                raise CheckpointError(
                    f"value key {key!r} at state{_key_path(keys)} holds '/': it would come back nested "
                    f"as {_key_path((*keys, *key.split('/')))}",
                    hint="put it inside a dict that holds no tensors (its keys are kept as they are, e.g. "
                         f"{{'cfg': {{{key!r}: ...}}}}), or nest it yourself")
            check_name(name, "value")
            yield name, (*keys, key), value


def holds_tensor(tree: Mapping[str, Any]) -> bool:
    """Whether nested dicts hold a tensor anywhere (else the whole dict is one non-tensor value)."""
    return any(is_tensor_like(v) or (isinstance(v, Mapping) and holds_tensor(v)) for v in tree.values())


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def dtype_name(obj: Any) -> str:
    """The logical dtype name of a numpy array or torch tensor ("float32", "bfloat16", ...)."""
    dt = getattr(obj, "dtype", None)
    if dt is None:
        raise CheckpointError(f"cannot save a {type(obj).__name__}",
                              hint="checkpoint values must be numpy arrays, torch tensors or nested dicts of them")
    name = dtype_str(dt)
    if name not in NATIVE_DTYPES and name not in VIEW_DTYPES:
        raise CheckpointError(f"dtype {name} is not supported",
                              hint=f"supported: {', '.join(NATIVE_DTYPES + tuple(VIEW_DTYPES))}")
    return name


def dtype_str(dt: Any) -> Any:
    """A dtype's name: numpy dtypes and scalar types (np.float32), torch dtypes (torch.bfloat16)
    and strings; anything else is returned as is (for the caller to refuse)."""
    if isinstance(dt, str):
        return dt
    if isinstance(dt, np.dtype) or (isinstance(dt, type) and issubclass(dt, np.generic)):
        return np.dtype(dt).name
    if type(dt).__module__ == "torch" and type(dt).__name__ == "dtype":
        name = str(dt).removeprefix("torch.")
        return {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128"
                }.get(name, name)
    return dt


def stored_dtype(logical: str) -> np.dtype:
    """The little-endian numpy dtype written to disk for a logical dtype."""
    return np.dtype(VIEW_DTYPES.get(logical, logical)).newbyteorder("<")


def grid_shape(shape: list[int], chunk_shape: list[int]) -> list[int]:
    return [math.ceil(s / c) for s, c in zip(shape, chunk_shape, strict=True)]


def chunk_key(index: list[int]) -> str:
    """The zarr v3 "default" chunk key with separator "." ('c.0.1', or 'c' for a 0-d array):
    every chunk file sits directly in its array's directory (no c/0/ subdirectories to create
    and fsync)."""
    return ".".join(["c", *map(str, index)])


def required_version(tensors: Mapping[str, TensorEntry], values: ValueLeaves | None = None) -> int:
    """Version 1 unless some tensor is split over several dimensions (then 2) or the state has
    non-tensor leaves or int keys (then 3)."""
    if values is not None:
        return 3
    return 2 if any(e.split is not None and len(e.split.dims) > 1 for e in tensors.values()) else 1


def split_bounds(n: int, parts: int, part: int) -> tuple[int, int]:
    """torch.chunk-style bounds of ``part`` of ``n`` items in ``parts`` pieces (may be empty)."""
    step = max(1, math.ceil(n / parts)) if n else 1
    lo = min(n, part * step)
    return lo, min(n, lo + step)


def array_metadata(entry: TensorEntry) -> dict[str, Any]:
    """The zarr.json document of a tensor, as zarr-python 3 writes it."""
    dt = entry.stored_dtype
    fill: Any = False if dt == "bool" else [0.0, 0.0] if dt.startswith("complex") else \
        0.0 if dt.startswith("float") else 0
    codec: dict[str, Any] = {"name": "bytes"}
    if np.dtype(dt).itemsize > 1:
        codec["configuration"] = {"endian": "little"}
    attrs = {"fabric": {"dtype": entry.dtype, "name": entry.path}}
    return {
        "shape": entry.shape, "data_type": dt,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": entry.chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
        "fill_value": fill, "codecs": [codec], "attributes": attrs,
        "zarr_format": 3, "node_type": "array", "storage_transformers": [],
    }


def group_metadata(attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"attributes": attributes or {}, "zarr_format": 3, "node_type": "group"}


def manifest_document(manifest: Manifest, provenance: Provenance | None = None) -> dict[str, Any]:
    """The root group's zarr.json: a plain Zarr v3 group whose attributes hold the manifest (and
    who saved it: not part of the manifest, so a copy or reshard compares equal to its source)."""
    attrs = {ATTR: manifest.model_dump(mode="json", exclude={"values"})}
    if manifest.values is not None:
        attrs[VALUES_ATTR] = manifest.values.model_dump(mode="json")
    if provenance is not None:
        attrs[PROVENANCE_ATTR] = provenance.model_dump(mode="json")
    return group_metadata(attrs)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=False).encode()


def parse_manifest(raw: bytes, source: str) -> Manifest:
    """Parse and sanity-check a manifest; every problem becomes a CheckpointCorruptError. The
    garbage collector is paused meanwhile (100,000 tensors: ~40 % less CPU, see manifest_checks)."""
    from fabric_hpc.gcpause import gc_paused
    with gc_paused():
        return _parse_manifest(raw, source)


def _parse_manifest(raw: bytes, source: str) -> Manifest:
    from pydantic import ValidationError

    from fabric_hpc.checkpoint.manifest_checks import tensor_group_clashes, tensor_problems
    try:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 (byte offset {exc.start})") from None
        except RecursionError:
            raise ValueError("nested too deeply") from None
        attrs = doc.get("attributes", {}) if isinstance(doc, dict) else None
        if not isinstance(attrs, dict) or doc.get("node_type") != "group" or ATTR not in attrs:
            raise ValueError(f"not a fabric checkpoint (root zarr.json has no {ATTR!r} attribute)")
        if not isinstance(attrs[ATTR], dict):
            raise ValueError(f"the {ATTR!r} attribute is a {_json_kind(attrs[ATTR])}, not a JSON object")
        version = attrs[ATTR].get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:  # before its fields are checked
            raise CheckpointNewerFormatError(f"{source}: format version {version} is newer than this "
                                             f"fabric-hpc understands ({FORMAT_VERSION})",
                                             hint="upgrade fabric-hpc")
        values = attrs.get(VALUES_ATTR)
        manifest = Manifest.model_validate({**attrs[ATTR], **({} if values is None else {"values": values})})
        if (manifest.values is not None) != (manifest.format_version >= 3):
            has = "with" if manifest.values is not None else "without"
            raise ValueError(f"format version {manifest.format_version} {has} the {VALUES_ATTR} attribute")
    except (ValueError, ValidationError, CheckpointError) as exc:
        if isinstance(exc, CheckpointNewerFormatError):
            raise
        why = ("; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: "
                         f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()[:5])
               if isinstance(exc, ValidationError) else str(exc))  # one line, no pydantic URLs
        raise CheckpointCorruptError(f"{source}: manifest is not valid: {why[:400]}",
                                     problems=[f"{source}: manifest is not valid: {why[:400]}"],
                                     hint="run `fabric ckpt verify` and restore an older step") from exc
    if manifest.format_version > FORMAT_VERSION:
        raise CheckpointNewerFormatError(f"{source}: format version {manifest.format_version} is newer than "
                              f"this fabric-hpc understands ({FORMAT_VERSION})", hint="upgrade fabric-hpc")
    problems = tensor_problems(manifest.tensors)
    problems += tensor_group_clashes(manifest.tensors)
    if problems:
        raise CheckpointCorruptError(f"{source}: manifest is inconsistent: " + "; ".join(problems[:5]),
                                     problems=problems, hint="run `fabric ckpt verify` and restore an older step")
    return manifest


def _json_kind(value: Any) -> str:
    return {str: "string", list: "list", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
