"""The consistency checks of a manifest's tensor entries (names, dtypes, shapes, splits, chunks),
made for manifests of 100,000+ tensors: what repeats from entry to entry (a name part already
checked, a dtype's stored name and item size) is worked out once per manifest, and each entry is
checked in one pass. The checks and their messages are those of ``format.parse_manifest``
(``tests/checkpoint/test_manifest_entry_checks.py`` holds one bad entry of every kind)."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping

import numpy as np

from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import (
    MAX_CHUNKS, MAX_DIM, MAX_NDIM, NATIVE_DTYPES, VIEW_DTYPES, TensorEntry, check_name, stored_dtype,
)

#: logical dtype -> (the name of the dtype stored on disk, its item size in bytes)
_STORED = {name: (stored_dtype(name).name, np.dtype(stored_dtype(name)).itemsize)
           for name in (*NATIVE_DTYPES, *VIEW_DTYPES)}


def tensor_problems(tensors: Mapping[str, TensorEntry]) -> list[str]:
    """The problems of every entry, in the order of ``tensors``."""
    good_parts: set[str] = set()
    return [p for name, e in tensors.items() for p in entry_problems(name, e, good_parts)]


def entry_problems(name: str, e: TensorEntry, good_parts: set[str] | None = None) -> list[str]:
    """What is wrong with one entry (nothing: []). ``good_parts``: name parts already found
    allowed, shared between the entries of one manifest (and added to here)."""
    parts = name.split("/")
    if good_parts is None or not good_parts.issuperset(parts):
        try:
            check_name(name)
        except CheckpointError as exc:
            return [str(exc.message)]
        if good_parts is not None:
            good_parts.update(parts)
    out = []
    if e.path != name:
        out.append(f"{name}: path {e.path!r} differs from its name")
    stored = _STORED.get(e.dtype)
    if stored is None:
        return out + [f"{name}: unknown dtype {e.dtype!r}"]
    if stored[0] != e.stored_dtype:
        return out + [f"{name}: stored dtype {e.stored_dtype!r} does not match {e.dtype!r}"]
    shape, chunk_shape = e.shape, e.chunk_shape
    if not _shapes_ok(shape, chunk_shape):
        out.append(f"{name}: bad shape {shape} / chunk shape {chunk_shape} (at most {MAX_NDIM} "
                   f"dimensions of at most {MAX_DIM:,}; each chunk dimension 1..that dimension)")
        return out
    # format.grid_shape (math.ceil(s / c)) without a float: the same for sizes up to 2**53, and
    # _shapes_ok bounds them by MAX_DIM
    grid = [-(-s // c) for s, c in zip(shape, chunk_shape)]
    cells = math.prod(grid)
    if len(e.chunks) > MAX_CHUNKS or cells > MAX_CHUNKS:
        out.append(f"{name}: more than {MAX_CHUNKS:,} chunks")
        return out
    if e.split is not None:
        split_problems = e.split.problems(len(shape))
        out.extend(f"{name}: {p}" for p in split_problems)
        if not split_problems and chunk_shape != (want := e.split.chunk_shape(shape)):
            out.append(f"{name}: chunk shape {chunk_shape} does not match its split (dim {e.split.dim}, "
                       f"parts {e.split.parts} of shape {shape} give chunk shape {want})")
    out += _chunk_problems(name, e, grid, math.prod(chunk_shape) * stored[1])
    if len(e.chunks) != cells or len({tuple(c.index) for c in e.chunks}) != cells:
        out.append(f"{name}: {len(e.chunks)} chunks listed, grid needs {cells}")
    return out


def _shapes_ok(shape: list[int], chunk_shape: list[int]) -> bool:
    if len(shape) != len(chunk_shape) or len(shape) > MAX_NDIM:
        return False
    for s, c in zip(shape, chunk_shape):
        if not 0 <= s <= MAX_DIM or not 1 <= c <= (s if s > 1 else 1):
            return False
    return True


def _chunk_problems(name: str, e: TensorEntry, grid: list[int], chunk_bytes: int) -> list[str]:
    out = []
    ndim, lt = len(grid), operator.lt
    for c in e.chunks:
        index = c.index  # every 0 <= i < g (its grid dimension)
        if len(index) != ndim or (ndim and (min(index) < 0 or not all(map(lt, index, grid)))):
            out.append(f"{name}: chunk index {index} outside the grid {grid}")
        elif c.nbytes != chunk_bytes:
            out.append(f"{name}: chunk {index} size {c.nbytes} != {chunk_bytes}")
    return out


def leaf_clashes(tensors: Iterable[str], leaves: Iterable[str]) -> list[str]:
    """Non-tensor leaves named like a tensor, or a group of tensors or leaves, or inside one (a
    restore would replace or merge them; tensors among themselves: ``tensor_group_clashes``)."""
    tensors, leaves = set(tensors), set(leaves)
    out = [f"{n!r} is both a tensor and a non-tensor value" for n in sorted(tensors & leaves)]
    if clashes := tensor_group_clashes(tensors | leaves, leaves):
        among_tensors = set(tensor_group_clashes(tensors))
        out += [c for c in clashes if c not in among_tensors]
    return out


def tensor_group_clashes(names: Iterable[str], values: Iterable[str] = ()) -> list[str]:
    """A name that is both a tensor and a group of other tensors ("a" and "a/b"): on disk one
    directory cannot be both, and a restore could not nest them (``values``: the names of
    non-tensor leaves among ``names``, so called)."""
    names, values = set(names), set(values)
    groups: set[str] = set()  # every group: a name's parents (the first one seen ends the walk up)
    for name in names:
        cut = name.rfind("/")
        while cut >= 0 and (parent := name[:cut]) not in groups:
            groups.add(parent)
            cut = name.rfind("/", 0, cut)
    if names.isdisjoint(groups):
        return []
    out = []
    for name in sorted(names):
        parts = name.split("/")
        out += [f"{parent!r} is both a {'non-tensor value' if parent in values else 'tensor'} and a group of "
                f"{name!r}"
                for parent in ("/".join(parts[:i]) for i in range(1, len(parts))) if parent in names]
    return out
