"""Hugging Face safetensors in and out.

Import reads ``model.safetensors.index.json`` (sharded) or a single ``*.safetensors`` file with
``safetensors.safe_open`` (memory-mapped; one tensor in memory at a time) and streams every
tensor into a fabric checkpoint. bfloat16/float8 keep their raw bits (stored as the unsigned
views of docs/checkpoint-format.md). ``config.json`` and ``generation_config.json`` travel in the
manifest's ``user_metadata.hf_files``.

Export writes the safetensors format itself (an 8-byte little-endian header length, a JSON
header of ``dtype``/``shape``/``data_offsets``, then the raw little-endian bytes), one tensor in
memory at a time, into shards of at most ``max_shard_bytes`` with the index, in a temporary
directory that is fsync'd and renamed to OUT only when complete.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.checkpoint import fsio, store
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError, CheckpointNotFoundError
from fabric_hpc.checkpoint.format import stored_dtype
from fabric_hpc.checkpoint.interop.stream import StreamWriter, imported_name, read_stored
from fabric_hpc.checkpoint.reader import open_checkpoint
from fabric_hpc.checkpoint.restore import require_readable
from fabric_hpc.checkpoint.writer import SaveResult, refuse_inside_checkpoint
from fabric_hpc.extras import require

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CARRIED = ("config.json", "generation_config.json")
#: user_metadata key: where the carried files had NaN/Infinity ({file: {JSON pointer: "NaN"}})
NONFINITE = "hf_nonfinite"
DEFAULT_SHARD = 5 << 30
#: Largest index or config JSON read from a model directory (a 1T-parameter model's index is ~10 MB).
MAX_JSON_BYTES = 64 << 20
# safetensors dtype names (the format's documented list) <-> fabric logical dtypes
ST_TO_FABRIC = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
                "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
                "U8": "uint8", "BOOL": "bool"}
FABRIC_TO_ST = {v: k for k, v in ST_TO_FABRIC.items()}
Progress = Callable[[int], None]


def _files(src: Path) -> tuple[Path, list[str], dict[str, str] | None]:
    """(directory, shard file names, weight_map or None) of a safetensors model."""
    if src.is_file() and src.suffix == ".safetensors":
        return src.parent, [src.name], None
    if not src.is_dir():
        raise CheckpointNotFoundError(f"no safetensors model at {src}",
                                      hint=f"pass a directory with {INDEX} or {SINGLE}, or a .safetensors file")
    if (src / INDEX).is_file():
        doc = _model_json(src / INDEX, "safetensors index")
        try:
            weight_map = doc["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map is not an object of file names")
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointCorruptError(f"{src / INDEX}: not a safetensors index ({exc})") from None
        files = sorted(set(weight_map.values()))
        bad = [f for f in files if Path(f).name != f or f in (".", "..") or not f.endswith(".safetensors")]
        if bad:
            raise CheckpointCorruptError(f"{src / INDEX}: shard names must be plain .safetensors file "
                                         f"names in the same directory, got {bad[:3]}")
        return src, files, weight_map
    found = sorted(p.name for p in src.glob("*.safetensors"))
    if len(found) != 1:
        raise CheckpointNotFoundError(f"{src}: no {INDEX} and {len(found)} .safetensors files",
                                      hint=f"add {INDEX}, or pass the one .safetensors file to import")
    return src, found, None


def _model_json(path: Path, what: str, *, nonfinite: bool = False) -> Any:
    """A model directory's JSON file read through fabric's input limits (a regular file of at most
    MAX_JSON_BYTES, UTF-8, nested at most 64 levels, no key twice; NaN/Infinity only in a model
    config, ``nonfinite``, as Python's json.dump writes them): a file that breaks one is a
    CheckpointCorruptError naming it and the problem; a permission error stays exit 5."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inputs import read_json
    try:
        return read_json(path, what=what, limit=MAX_JSON_BYTES, nonfinite=nonfinite)
    except ConfigError as exc:
        raise CheckpointCorruptError(exc.message,
                                     hint="fix or re-download the file; nothing was imported") from None


@contextmanager
def _unreadable_as_corrupt(path: Path) -> Iterator[None]:
    """safetensors' own errors (bad header, dtype, shape or offsets; a truncated file) name the
    file as not readable; every other error (fabric's, a full disk) passes through."""
    from safetensors import SafetensorError
    try:
        yield
    except SafetensorError as exc:
        raise CheckpointCorruptError(f"{path}: not a readable safetensors file ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})",
                                     hint="re-download or re-save the file; nothing was imported") from None


def import_hf(src: Path | str, root: Path | str, *, step: int = 0, prefix: str | None = None,
              tags: list[str] | tuple[str, ...] = (), progress: Progress | None = None) -> SaveResult:
    """Import a safetensors model (``src``: directory or file) as checkpoint ``step`` under ``root``."""
    require("safetensors", extra="torch", needed_for="Hugging Face safetensors import")
    require("torch", extra="torch", needed_for="Hugging Face safetensors import")  # safe_open(framework="pt")
    from safetensors import safe_open
    directory, files, weight_map = _files(Path(src))
    carried, nonfinite = {}, {}
    for fname in CARRIED:
        if (directory / fname).is_file():
            carried[fname], where = finite_doc(_model_json(directory / fname, "model config", nonfinite=True))
            if where:
                nonfinite[fname] = where
    meta: dict[str, Any] = {"source": "huggingface-safetensors", "hf_files": carried}
    if nonfinite:  # the manifest is strict JSON: each NaN/Infinity is null there, and its place is kept
        meta[NONFINITE] = nonfinite
    seen: set[str] = set()
    with StreamWriter(root, step=step, tags=tags, metadata=meta, layout={"format": "hf"}) as out:
        for fname in files:
            path = directory / fname
            if not path.is_file():
                raise CheckpointNotFoundError(f"{path}: shard named in {INDEX} is missing")
            with _unreadable_as_corrupt(path), safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    if weight_map is not None and weight_map.get(key) != fname:
                        raise CheckpointCorruptError(f"{path}: tensor {key!r} is not mapped to this file in {INDEX}")
                    if key in seen:
                        raise CheckpointCorruptError(f"tensor {key!r} appears in two shards")
                    dtype = f.get_slice(key).get_dtype()
                    if dtype not in ST_TO_FABRIC:
                        raise CheckpointError(f"{path}: tensor {key!r} has dtype {dtype}, which fabric cannot store",
                                              hint=f"supported: {', '.join(ST_TO_FABRIC)}")
                    tensor = f.get_tensor(key)
                    out.add(imported_name(key, prefix, source="safetensors"), tensor)
                    seen.add(key)
                    if progress:
                        progress(tensor.numel() * tensor.element_size())
                    del tensor
        missing = sorted(set(weight_map or ()) - seen)
        if missing:
            raise CheckpointCorruptError(f"{INDEX} names tensors no shard holds: {missing[:5]}")
    assert out.result is not None
    return out.result


def _plan_shards(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[tuple[str, int]]]:
    """Greedy in name order: a new shard when the next tensor would pass ``max_bytes`` (a tensor
    larger than that gets a shard of its own, as transformers does)."""
    shards: list[list[tuple[str, int]]] = [[]]
    size = 0
    for name, n in sizes:
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, n))
        size += n
    return shards


def _refuse_unexportable(ckpt: Any, keys: dict[str, str]) -> None:
    """Before writing anything: every tensor must have a safetensors dtype."""
    bad = [n for n in keys if ckpt.entry(n).dtype not in FABRIC_TO_ST]
    if bad:
        dtype = ckpt.entry(bad[0]).dtype
        more = f" (and {len(bad) - 1} more: {bad[1:4]})" if len(bad) > 1 else ""
        how = ("save it as real and imaginary parts (torch.view_as_real(t): a float tensor with a last "
               "dimension of 2), or ") if dtype.startswith("complex") else ""
        raise CheckpointError(f"{bad[0]}: dtype {dtype} has no safetensors name{more}; safetensors stores "
                              f"{', '.join(sorted(FABRIC_TO_ST))}",
                              hint=f"{how}export only the subtree without it (--prefix; prefix= in Python)")


def export_hf(path: Path | str, out: Path | str, *, step: int | None = None, prefix: str | None = None,
              max_shard_bytes: int = DEFAULT_SHARD, config: Path | str | None = None,
              quantization_config: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Write checkpoint ``path`` (``step`` or latest) as a safetensors model directory ``out``.

    Tensor names become Hugging Face keys with ``/`` replaced by ``.``; ``prefix`` exports one
    subtree (stripped from the keys). ``config`` (a config.json) overrides the one carried from
    an import. A converted checkpoint with fp8 weights gets the matching ``quantization_config``
    in config.json (:mod:`fabric_hpc.checkpoint.convert.quant`) unless ``quantization_config`` is
    False. ``out`` must not exist (or be an empty directory)."""
    if max_shard_bytes < 1:
        raise CheckpointError(f"max shard size must be positive, got {max_shard_bytes}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists", hint="export into a new directory")
    refuse_inside_checkpoint(out, "the safetensors export")
    ckpt = open_checkpoint(path, step)
    keys = _export_keys(ckpt.names, prefix)
    _refuse_unexportable(ckpt, keys)
    sizes = [(n, int(np.prod(ckpt.entry(n).shape)) * stored_dtype(ckpt.entry(n).dtype).itemsize) for n in keys]
    shards = _plan_shards(sizes, max_shard_bytes)
    fnames = [SINGLE] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    extra = _carried(ckpt.manifest.user_metadata, config)
    quant = _quantization(ckpt.manifest.user_metadata, keys, extra) if quantization_config else None
    fsio.make_dirs(out.parent)
    tmp = fsio.export_tmp_dir(out)
    fsio.make_dir(tmp)
    try:
        with store.reading(ckpt.ref):
            require_readable(ckpt)  # what verify calls DAMAGED is not exported
            for fname, shard in zip(fnames, shards):
                _write_file(tmp / fname, ckpt, shard, keys, progress)
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(n for _, n in sizes)},
                     "weight_map": {keys[n]: f for f, shard in zip(fnames, shards) for n, _ in shard}}
            extra[INDEX] = index
        for fname, doc in extra.items():
            fsio.write_small(tmp / fname, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n", fsync=False)
        fsio.fsync_paths([tmp / f for f in [*fnames, *extra]] + [tmp])
        fsio.publish_dir(tmp, out)
    except BaseException:
        fsio.remove_tree(tmp)
        raise
    return {"path": str(out), "files": fnames, "tensors": len(keys), "bytes": sum(n for _, n in sizes),
            "step": ckpt.step, "quantization_config": quant, "config_written": "config.json" in extra}


def _quantization(user_metadata: dict[str, Any], keys: dict[str, str], extra: dict[str, Any]) -> dict | None:
    """The quantization_config of a converted fp8 checkpoint (None for any other), merged into
    the config.json to write (``extra``) when there is one."""
    facts = user_metadata.get("quantization")
    if not isinstance(facts, dict):
        return None
    from fabric_hpc.checkpoint.convert.quant import hf_quantization_config, merge_config, weight_module
    modules = {m: k[:-len(".weight")] for n, k in keys.items()
               if (m := weight_module(n)) is not None and k.endswith(".weight")}
    quant = hf_quantization_config(facts, modules)
    if "config.json" in extra:
        extra["config.json"] = merge_config(extra["config.json"], quant)
    return quant


def _export_keys(names: list[str], prefix: str | None) -> dict[str, str]:
    """fabric name -> Hugging Face key; refuses two names that map to one key."""
    pre = prefix.strip("/") + "/" if prefix else ""
    keys = {n: n[len(pre):].replace("/", ".") for n in names if n.startswith(pre)}
    if not keys:
        raise CheckpointNotFoundError(f"no tensors under prefix {prefix!r}",
                                      hint="list the names with `fabric ckpt show`")
    if len(set(keys.values())) != len(keys):
        raise CheckpointError("two tensor names map to the same Hugging Face key (after '/' -> '.')",
                              hint="export one subtree with --prefix")
    return keys


def _carried(user_metadata: dict[str, Any], config: Path | str | None) -> dict[str, Any]:
    """The model config files to write: those an import carried (with their NaN/Infinity back), and
    ``config`` (read as given, NaN included)."""
    files = user_metadata.get("hf_files")
    extra = {k: v for k, v in files.items() if k in CARRIED} if isinstance(files, dict) else {}
    nonfinite = user_metadata.get(NONFINITE)
    for fname in extra:
        where = nonfinite.get(fname) if isinstance(nonfinite, dict) else None
        if isinstance(where, dict):
            extra[fname] = restore_nonfinite(extra[fname], where)
    if config is not None:
        from fabric_hpc.inputs import read_json

        # exit 3 naming the problem
        extra["config.json"] = read_json(config, what="config", limit=16 << 20, nonfinite=True)
    return extra


def finite_doc(doc: Any, at: str = "") -> tuple[Any, dict[str, str]]:
    """``doc`` with each NaN, Infinity and -Infinity as None, and where each was (a JSON pointer,
    RFC 6901, -> ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``)."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return None, {at: "NaN" if doc != doc else ("Infinity" if doc > 0 else "-Infinity")}
    where: dict[str, str] = {}
    if isinstance(doc, dict):
        out: Any = {}
        for k, v in doc.items():
            out[k], w = finite_doc(v, f"{at}/{k.replace('~', '~0').replace('/', '~1')}")
            where.update(w)
        return out, where
    if isinstance(doc, list):
        out = []
        for i, v in enumerate(doc):
            item, w = finite_doc(v, f"{at}/{i}")
            out.append(item)
            where.update(w)
        return out, where
    return doc, where


def restore_nonfinite(doc: Any, where: dict[str, str]) -> Any:
    """``doc`` (a copy) with the values :func:`finite_doc` took out put back; a pointer that no longer
    leads to a null (the metadata was edited) is skipped."""
    doc = copy.deepcopy(doc)
    for pointer, name in where.items():
        if name not in ("NaN", "Infinity", "-Infinity") or not str(pointer).startswith("/"):
            continue
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
        node = doc
        for part in parents:
            node = _child(node, part)
        if isinstance(node, list) and last.isascii() and last.isdigit() and int(last) < len(node):
            last = int(last)
        elif not isinstance(node, dict) or last not in node:
            continue
        if node[last] is None:
            node[last] = float(name)
    return doc


def _child(node: Any, part: str) -> Any:
    """``node[part]`` of a JSON document (a list index in digits), None when there is none."""
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def _write_file(path: Path, ckpt: Any, shard: list[tuple[str, int]], keys: dict[str, str],
                progress: Progress | None) -> None:
    """One safetensors file: header, then each tensor's bytes (largest alignment first, so every
    tensor starts aligned to its item size)."""
    order = sorted(shard, key=lambda s: (-stored_dtype(ckpt.entry(s[0]).dtype).itemsize, keys[s[0]]))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, n in order:
        e = ckpt.entry(name)
        if e.dtype not in FABRIC_TO_ST:
            raise CheckpointError(f"{name}: dtype {e.dtype} has no safetensors name")
        header[keys[name]] = {"dtype": FABRIC_TO_ST[e.dtype], "shape": e.shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fsio.FILE_MODE)
    try:
        fsio._write_all(fd, np.frombuffer(struct.pack("<Q", len(raw)) + raw, np.uint8))
        for name, n in order:
            data = read_stored(ckpt, name).data
            fsio._write_all(fd, data.reshape(-1).view(np.uint8))
            if progress:
                progress(n)
            del data
    except OSError as exc:
        raise fsio._io_error("write", path, exc) from exc
    finally:
        os.close(fd)
