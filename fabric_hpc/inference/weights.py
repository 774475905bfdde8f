"""Which weights a run serves: recorded in ``run.json`` so that a resume with other weights is
refused (its results would mix two models, and ``merge`` cannot tell them apart).

* a PyTorch engine serving a fabric checkpoint (``"weights": "fabric-checkpoint"`` in
  ``fabric_engine.json``): the checkpoint's path, step, prefix and naming;
* every other engine directory (a Hugging Face safetensors directory, a TensorRT-LLM engine, a
  simulated artefact; for the PyTorch engine also its ``weights``/``seed``/``preset``): a SHA-256
  over the directory's top-level regular files except ``fabric_engine.json`` (whose limits are
  compared on their own) -- each file's name and size, the whole content of files up to
  :data:`HASHED_WHOLE` bytes (configs, indexes, tokenizers), and for larger files (weight
  shards, engines) their mtime and first MiB (a safetensors header and the start of the data).
  Reading every byte of a 100 GB model at every resume would take minutes; a weights file
  rewritten in place gets a new mtime, and a copy that keeps mtimes (``cp -p``, ``rsync -a``)
  keeps the identity.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fabric_hpc.inputs import os_error

__all__ = ["HASHED_WHOLE", "describe_weights", "weights_identity"]

#: files up to this size are hashed whole; larger ones by size, mtime and their first MiB
HASHED_WHOLE = 64 << 20
_HEAD = 1 << 20
_ENGINE_FILE = "fabric_engine.json"


def weights_identity(engine: str, engine_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The identity of the weights the engine in ``engine_dir`` serves (see the module doc)."""
    root = Path(engine_dir)
    build = _engine_build(root) if engine == "pytorch" else {}
    if build.get("weights") == "fabric-checkpoint" and isinstance(build.get("checkpoint"), dict):
        ck = build["checkpoint"]
        return {"kind": "fabric-checkpoint", "path": os.path.normpath(root / str(ck.get("path"))),
                "step": ck.get("step"), "prefix": ck.get("prefix"), "naming": ck.get("naming")}
    ident: dict[str, Any] = {"kind": "files", "sha256": _digest(root)}
    ident.update({k: build[k] for k in ("weights", "seed", "preset") if build.get(k) is not None})
    return ident


def describe_weights(ident: Any) -> str:
    """One line for messages: ``checkpoint /ck step 1200`` or ``engine files sha256 1a2b…``."""
    if not isinstance(ident, dict):
        return f"unknown weights ({ident!r:.80})"
    if ident.get("kind") == "fabric-checkpoint":
        prefix = f" (prefix {ident.get('prefix')!r})" if ident.get("prefix") else ""
        return f"checkpoint {ident.get('path')} step {ident.get('step')}{prefix}"
    extra = ", ".join(f"{k} {ident[k]}" for k in ("weights", "preset", "seed") if k in ident)
    return f"engine files sha256 {str(ident.get('sha256'))[:12]}" + (f" ({extra})" if extra else "")


def _engine_build(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / _ENGINE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the engine was built from it a moment ago; a file gone now is the files' digest
    return doc if isinstance(doc, dict) else {}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    try:
        entries = sorted((e for e in os.scandir(root) if e.is_file(follow_symlinks=True) and e.name != _ENGINE_FILE),
                         key=lambda e: e.name)
        for e in entries:
            st = e.stat(follow_symlinks=True)
            h.update(f"{e.name}\0{st.st_size}\0".encode())
            with open(e.path, "rb") as f:
                if st.st_size <= HASHED_WHOLE:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                else:
                    h.update(f"{st.st_mtime_ns}\0".encode())
                    h.update(f.read(_HEAD))
    except OSError as exc:  # the engine was just built from these files: unreadable now is external
        raise os_error(exc, "engine file (identifying the weights the run serves)") from None
    return h.hexdigest()
