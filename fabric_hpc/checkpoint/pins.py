"""Pins: steps of a checkpoint root that something outside training serves (an inference engine
prepared from a step), so ``prune`` keeps them.

A pin is a small JSON file ``ROOT/.pins/<key>.json``::

    {"step": 1200, "by": "fabric infer prepare", "target": "/engines/llama-8b"}

``key`` names the holder (one pin per holder: preparing again replaces it); ``by`` and ``target``
say who pinned it, for people reading ``prune``'s output. Remove the file (:func:`unpin`) to
release the step. ``prune`` keeps every pinned step that exists and reports it; a pin file that
cannot be read is reported and protects nothing (it never blocks pruning).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc.atomic import write_atomic
from fabric_hpc.checkpoint import fsio
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import MAX_STEP

PINS_DIR = ".pins"
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MAX_PIN_BYTES = 64 << 10


@dataclass(frozen=True)
class Pin:
    """One pin: the step it keeps, who holds it (``by``, ``target``) and its file."""

    step: int
    by: str
    target: str
    path: Path


def pin_step(root: Path | str, step: int, *, key: str, by: str, target: str = "") -> Path:
    """Pin ``step`` of checkpoint root ``root`` for holder ``key`` (replacing its earlier pin),
    atomically. Returns the pin file. The root must exist (a pin never creates a root)."""
    if not _KEY.match(key):
        raise CheckpointError(f"pin key {key!r} is not a plain name",
                              hint="use letters, digits, '_', '.', '-' (e.g. a hash of the engine directory)")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise CheckpointError(f"pin step must be in 0..{MAX_STEP}, got {step!r}")
    pins = Path(root) / PINS_DIR
    pins.mkdir(mode=fsio.DIR_MODE, exist_ok=True)
    return write_atomic(pins / f"{key}.json", json.dumps({"step": step, "by": by, "target": target}) + "\n",
                        mode=fsio.FILE_MODE)


def unpin(root: Path | str, key: str) -> bool:
    """Remove holder ``key``'s pin; whether there was one."""
    try:
        os.unlink(Path(root) / PINS_DIR / f"{key}.json")
    except FileNotFoundError:
        return False
    return True


def read_pins(root: Path | str) -> tuple[list[Pin], list[str]]:
    """(the pins of ``root``, the problems of pin files that cannot be read). Pin files are
    opened without following symlinks and never block (``fsio.read_in``)."""
    pins_dir = Path(root) / PINS_DIR
    try:
        names = sorted(e.name for e in os.scandir(pins_dir) if e.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    pins, problems = [], []
    for name in names:
        try:
            doc = json.loads(fsio.read_in(pins_dir, name, _MAX_PIN_BYTES))
            step = doc["step"]
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
                raise ValueError(f"step {step!r} is not a step")
            pins.append(Pin(step, str(doc.get("by", "")), str(doc.get("target", "")), pins_dir / name))
        except (OSError, ValueError, TypeError, KeyError, RecursionError, fsio.UnsafeFileError) as exc:
            problems.append(f"{PINS_DIR}/{name}: not a pin ({exc.__class__.__name__}: {str(exc)[:120]})")
    return pins, problems
