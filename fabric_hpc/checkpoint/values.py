"""Non-tensor leaves of a state (an optimizer's ``param_groups``, an LR scheduler's counters, a
GradScaler's scale): stored as JSON in the root ``zarr.json`` next to the manifest (format
version 3) and restored exactly, and the int dict keys above tensors (``optim/state/0``) restored
as ints.

The encoding is plain JSON where JSON is exact (None, bool, int, finite float, str, list) and a
one-key tagged object otherwise: ``{"$t": [...]}`` a tuple, ``{"$f": "inf"|"-inf"|"nan"}`` a
non-finite float, ``{"$d": [[key, value], ...]}`` a dict (keys str or int, order kept). Nothing
is ever pickled; anything else is refused naming its key path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from fabric_hpc.checkpoint.errors import CheckpointError

#: the largest encoded size of all non-tensor leaves of one checkpoint (they live in the manifest)
MAX_VALUES_BYTES = 16 << 20
#: the deepest nesting of lists, tuples and dicts inside one non-tensor leaf (saved and read: deeper
#: is refused on save and is damage on read, not a RecursionError)
MAX_VALUE_DEPTH = 100
_HINT = ("non-tensor leaves may be None, bool, int, float, str, and lists, tuples and dicts (str or "
         "int keys) of these; save tensors under dict keys, convert anything else (e.g. "
         "str(obj) or a tensor)")


def is_tensor_like(value: Any) -> bool:
    """Arrays, tensors, Shards and staged HostArrays (anything with a dtype) are tensors; plain
    Python values are non-tensor leaves."""
    from fabric_hpc.checkpoint.tensors import HostArray, Shard
    return isinstance(value, (Shard, HostArray)) or hasattr(value, "dtype")


def key_path(keys: Iterable[Any]) -> str:
    """``state['optim']['param_groups'][0]`` (the path a user would index)."""
    return "state" + "".join(f"[{k!r}]" for k in keys)


def encode(value: Any, keys: tuple = (), depth: int = 0) -> Any:
    """The JSON form of a non-tensor leaf; CheckpointError naming the key path otherwise (``depth``:
    how many lists, tuples and dicts of the leaf hold ``value``)."""
    if isinstance(value, (list, tuple, Mapping)) and depth >= MAX_VALUE_DEPTH:
        raise CheckpointError(f"cannot save {key_path(keys)}: lists, tuples and dicts nest more than "
                              f"{MAX_VALUE_DEPTH} levels deep in this value (a cycle?)",
                              hint="flatten it, or store it as a string (e.g. json.dumps of it)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$f": "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
    if isinstance(value, list):
        return [encode(v, (*keys, i), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"$t": [encode(v, (*keys, i), depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, Mapping):
        return {"$d": [[_check_key(k, keys), encode(v, (*keys, k), depth + 1)] for k, v in value.items()]}
    what = "a tensor inside a list or tuple" if is_tensor_like(value) else f"a {type(value).__name__}"
    raise CheckpointError(f"cannot save {key_path(keys)}: it is {what}", hint=_HINT)


def nests_too_deep(doc: Any, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether lists, tuples and dicts nest more than ``limit`` levels in ``doc`` (a value of a
    manifest's ``layout`` or ``metadata``; walked without recursion)."""
    stack = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, tuple, Mapping)):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, Mapping) else node))
    return False


def _check_key(key: Any, keys: tuple) -> Any:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise CheckpointError(f"cannot save {key_path((*keys, key))}: the key {key!r} is a "
                              f"{type(key).__name__}; dict keys must be str or int",
                              hint="convert the key to a string (or an int)")
    return key


def decode(doc: Any, depth: int = 0) -> Any:
    """Inverse of :func:`encode`; ValueError on anything :func:`encode` cannot have written (nesting
    deeper than :data:`MAX_VALUE_DEPTH` too)."""
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if depth >= MAX_VALUE_DEPTH and isinstance(doc, (list, dict)) and not _is_float_tag(doc):
        raise ValueError(f"lists, tuples and dicts nest more than {MAX_VALUE_DEPTH} levels deep (no save "
                         "writes that)")
    if isinstance(doc, list):
        return [decode(v, depth + 1) for v in doc]
    if isinstance(doc, dict) and len(doc) == 1:
        (tag, body), = doc.items()
        if tag == "$t" and isinstance(body, list):
            return tuple(decode(v, depth + 1) for v in body)
        if _is_float_tag(doc):
            return float(body)
        if tag == "$d" and isinstance(body, list) and all(_is_pair(p) for p in body):
            return {k: decode(v, depth + 1) for k, v in body}
    raise ValueError(f"not an encoded value: {json.dumps(doc)[:80]}")


def plain(doc: Any) -> Any:
    """An encoded leaf as the JSON a reader expects (``fabric ckpt show --json``): tuples as lists, keys as
    strings, non-finite floats as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; lossy where JSON is
    (:func:`decode` gives the exact values). ValueError as :func:`decode`."""
    return _plain(decode(doc))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _is_float_tag(doc: Any) -> bool:
    return isinstance(doc, dict) and len(doc) == 1 and doc.get("$f") in ("inf", "-inf", "nan")


def _is_pair(p: Any) -> bool:
    return isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int)) and not isinstance(p[0], bool)


def check_size(leaves: Mapping[str, Any]) -> None:
    size = len(json.dumps(leaves, allow_nan=False))
    if size > MAX_VALUES_BYTES:
        big = max(leaves, key=lambda n: len(json.dumps(leaves[n])))
        raise CheckpointError(f"the non-tensor leaves take {size:,} bytes of JSON, more than the "
                              f"{MAX_VALUES_BYTES >> 20} MiB the manifest holds (largest: {big!r})",
                              hint="store large data as tensors (e.g. torch.tensor(list)), not Python lists")


def int_key_paths(names_keys: Iterable[tuple[str, tuple]]) -> list[list[Any]]:
    """Every distinct key path prefix ending in an int key (to turn '0' back into 0)."""
    out: dict[tuple, None] = {}
    for _, keys in names_keys:
        for i, k in enumerate(keys):
            if isinstance(k, int):
                out[tuple(keys[:i + 1])] = None
    return [list(p) for p in sorted(out, key=lambda p: (len(p), [str(k) for k in p]))]


def restore_int_keys(tree: dict[str, Any], paths: Iterable[list[Any]]) -> None:
    """Rename the string keys '0', '1' that were int keys at save time back to ints (in place;
    paths not in ``tree``, e.g. outside a partial restore, are skipped)."""
    for path in sorted(paths, key=len):
        node: Any = tree
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        last = path[-1]
        if isinstance(node, dict) and str(last) in node:
            node[last] = node.pop(str(last))


def split_state(state: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], Any]:
    """(the tensor leaves as (name, value) pairs, the :class:`~format.ValueLeaves` of the rest,
    or None when the state is tensors under str keys only)."""
    from fabric_hpc.checkpoint.format import ValueLeaves, flatten_keyed
    from fabric_hpc.checkpoint.manifest_checks import leaf_clashes
    tensors, leaves, keyed = [], {}, []
    for name, keys, value in flatten_keyed(state):
        keyed.append((name, keys))
        if is_tensor_like(value):
            tensors.append((name, value))
        else:
            leaves[name] = encode(value, keys)
    if clashes := leaf_clashes((n for n, _ in tensors), leaves):
        raise CheckpointError(f"cannot save the state: {clashes[0]} (a key holding '/' nests like a dict)",
                              hint="rename one of them, or nest the tensor inside the dict yourself")
    check_size(leaves)
    int_keys = int_key_paths(keyed)
    if not leaves and not int_keys:
        return tensors, None
    return tensors, ValueLeaves(leaves=leaves, int_keys=int_keys)


def selected(values: Any, wanted: Any) -> dict[str, Any]:
    """The decoded leaves of ``values`` whose names ``wanted(name)`` accepts."""
    if values is None:
        return {}
    return {n: decode(doc) for n, doc in values.leaves.items() if wanted(n)}
