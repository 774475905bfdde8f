"""The part file of a multi-node tiered save (``LOCAL/part-step-N/part.json``: token, node index,
node count and the chunks this node holds), read and checked: a damaged one (a crashed writer, a
bad disk, an edit) is a :class:`CheckpointCorruptError` naming the file and the fix, never a raw
JSON, key or recursion error, and nothing in it may name a path outside the tier."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fabric_hpc.checkpoint import fsio
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError
from fabric_hpc.checkpoint.format import Manifest, check_name

PART_FILE = "part.json"
MAX_PART_BYTES = 512 << 20  # a part file lists this node's chunks (as large as a manifest at most)
_TOKEN = re.compile(r"^[0-9a-f]{1,64}$")  # part of the shared staging directory's name


def damaged(part_dir: Path, step: int, problem: str) -> CheckpointCorruptError:
    """The error for a damaged part file: its step cannot reach the shared tier from this node."""
    file = part_dir / PART_FILE
    return CheckpointCorruptError(
        f"{file}: the part file of node-local step {step} is damaged: {problem}",
        problems=[f"{file}: {problem}"],
        hint=f"this node's part of step {step} cannot be drained, so step {step} cannot commit to the shared "
             f"tier: restore the newest complete step (`fabric ckpt list` on the shared root), and delete "
             f"{part_dir} once step {step} is not needed (or save step {step} again)")


def read_part_file(part_dir: Path, step: int) -> dict[str, Any]:
    """The checked part file of ``part_dir`` (the part of ``step``, from the directory's name)."""
    try:
        raw = fsio.read_in(part_dir, PART_FILE, MAX_PART_BYTES)  # no link, no FIFO, not too big
    except PermissionError:  # another user's part, not a damaged one: never advise deleting it
        from fabric_hpc.checkpoint.store import denied
        raise denied(part_dir / PART_FILE) from None
    except OSError as exc:
        raise damaged(part_dir, step, f"cannot be read ({exc.strerror or exc})") from None
    try:
        info = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise damaged(part_dir, step, f"not UTF-8 (byte offset {exc.start})") from None
    except ValueError as exc:
        raise damaged(part_dir, step, f"not JSON ({exc})") from None
    except RecursionError:
        raise damaged(part_dir, step, "nested too deeply") from None
    if problem := _problem(info, step):
        raise damaged(part_dir, step, problem)
    return info


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _problem(info: Any, step: int) -> str | None:
    if not isinstance(info, dict):
        return f"a JSON {type(info).__name__}, not an object"
    missing = [k for k in ("step", "token", "node", "nodes", "chunks") if k not in info]
    if missing:
        return f"no {', '.join(missing)}"
    if not _is_int(info["step"]) or info["step"] != step:
        return f"step {info['step']!r} is not the step of its directory ({step})"
    if not isinstance(info["token"], str) or not _TOKEN.match(info["token"]):
        return f"token {info['token']!r} is not 1..64 lowercase hex digits"
    nodes, node = info["nodes"], info["node"]
    if not _is_int(nodes) or not _is_int(node) or not 0 <= node < nodes:
        return f"node {node!r} of {nodes!r} nodes is not a node index"
    if nodes < 2:  # one node holds every chunk: a complete step-N, never a part
        return f"a part of {nodes} node(s) (a part is one of 2 or more nodes' shares)"
    if not isinstance(info["chunks"], list):
        return "chunks is not a list"
    for item in info["chunks"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], list) and all(_is_int(i) and i >= 0 for i in item[1])):
            return f"chunk {str(item)[:100]} is not a [tensor name, chunk index] pair"
        try:
            check_name(item[0])
        except CheckpointError as exc:
            return f"chunk {str(item)[:100]}: {exc.message}"
    return None


def held_chunks(part_dir: Path, step: int, manifest: Manifest) -> list[list]:
    """The [tensor, chunk index] pairs this node holds, each one a chunk of ``manifest``."""
    held = read_part_file(part_dir, step)["chunks"]
    listed = {(name, tuple(c.index)) for name, e in manifest.tensors.items() for c in e.chunks}
    for name, index in held:
        if (name, tuple(index)) not in listed:
            raise damaged(part_dir, step, f"chunk {index} of {name!r} is not in the part's manifest")
    return held
