"""Which weights a run serves: recorded in ``run.json`` so that a resume with other weights is
refused (its results would mix two models, and ``merge`` cannot tell them apart).

* a PyTorch engine serving a fabric checkpoint (``"weights": "fabric-checkpoint"`` in
  ``fabric_engine.json``): the checkpoint's path, step, prefix and naming;
* every other engine directory (a Hugging Face safetensors directory, a TensorRT-LLM engine, a
  simulated artefact; for the PyTorch engine also its ``weights``/``seed``/``preset``): a SHA-256
  over the directory's top-level regular files except ``fabric_engine.json`` (whose limits are
  compared on their own) and the files that do not change what the engine computes
  (:func:`left_out`) -- each file's name and size, the whole content of files up to
  :data:`HASHED_WHOLE` bytes (configs, indexes), and for larger files (weight shards, engines)
  their mtime and first MiB (a safetensors header and the start of the data).
  Reading every byte of a 100 GB model at every resume would take minutes; a weights file
  rewritten in place gets a new mtime, and a copy that keeps mtimes (``cp -p``, ``rsync -a``)
  keeps the identity.

Left out: tokenizer files (a run that encoded text prompts records and checks the tokenizer's own
identity, :mod:`.tokenizer`), documentation and VCS files (what ``huggingface-cli download``
leaves beside a model), and ``generation_config.json``: no fabric engine reads it (the PyTorch
engine decodes greedily and stops at ``config.json``'s ``eos_token_id``, TensorRT-LLM at the
``end_id`` engine option, and sampling settings in an item are dead-lettered), so it cannot change
a result here. (vLLM reads its EOS ids and sampling defaults: an engine that starts reading it
must take it out of :data:`_NOT_COMPUTING`.) Adding, changing or removing any of them resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabric_hpc.inputs import os_error

__all__ = ["HASHED_WHOLE", "describe_weights", "left_out", "same_weights", "weights_identity"]

#: files up to this size are hashed whole; larger ones by size, mtime and their first MiB
HASHED_WHOLE = 64 << 20
_HEAD = 1 << 20
_ENGINE_FILE = "fabric_engine.json"
#: top-level files that do not change what the engine computes (see the module doc)
_NOT_COMPUTING = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json", "chat_template.json",
    "chat_template.jinja", "generation_config.json", ".gitattributes", ".gitignore"})
#: documentation, matched case-insensitively: README.md, USE_POLICY.md, LICENSE, LICENSE.txt, NOTICE;
#: nothing else that starts so (``license-free-model-00001-of-00002.safetensors`` is a weight shard)
_DOC = re.compile(r"(?:licen[cs]e|notice|copying)(?:\.(?:txt|md|rst))?|.*\.md")


def left_out(name: str) -> bool:
    """Whether the top-level file ``name`` is left out of the weights' digest."""
    return name in _NOT_COMPUTING or _DOC.fullmatch(name.lower()) is not None


def weights_identity(engine: str, engine_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The identity of the weights the engine in ``engine_dir`` serves (see the module doc)."""
    root = Path(engine_dir)
    build = _engine_build(root) if engine == "pytorch" else {}
    if build.get("weights") == "fabric-checkpoint" and isinstance(build.get("checkpoint"), dict):
        ck = build["checkpoint"]
        return {"kind": "fabric-checkpoint", "path": os.path.normpath(root / str(ck.get("path"))),
                "step": ck.get("step"), "prefix": ck.get("prefix"), "naming": ck.get("naming")}
    ident: dict[str, Any] = {"kind": "files", "sha256": _digest(root, left_out)}
    ident.update({k: build[k] for k in ("weights", "seed", "preset") if build.get(k) is not None})
    return ident


def same_weights(recorded: Any, now: dict[str, Any], engine_dir: str | os.PathLike[str]) -> bool:
    """Whether run.json's ``recorded`` identity is that of ``now`` (:func:`weights_identity` of
    ``engine_dir``). A run.json written by a release before files were left out (a digest
    over every top-level file but fabric_engine.json) holds a digest that differs from today's
    wherever the directory has a left-out file: that digest is computed too, but only then -- it
    reads the directory's files a second time, which a resume whose identity matches need not pay."""
    if recorded == now:
        return True
    if not (isinstance(recorded, dict) and recorded.get("kind") == now.get("kind") == "files"
            and {**recorded, "sha256": None} == {**now, "sha256": None}):
        return False
    root = Path(engine_dir)
    if not _leaves_out(root):  # both digests cover the same files: the older one is today's
        return False
    return recorded.get("sha256") == _digest(root, lambda name: False)


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


def _leaves_out(root: Path) -> bool:
    try:
        return any(left_out(e.name) and e.is_file(follow_symlinks=True) for e in os.scandir(root))
    except OSError as exc:
        raise os_error(exc, "engine directory (identifying the weights the run serves)") from None


def _digest(root: Path, skip: Callable[[str], bool]) -> str:
    """The SHA-256 over ``root``'s top-level regular files but fabric_engine.json and those ``skip``
    names (see the module doc)."""
    h = hashlib.sha256()
    try:
        entries = sorted((e for e in os.scandir(root) if e.is_file(follow_symlinks=True)
                          and e.name != _ENGINE_FILE and not skip(e.name)), key=lambda e: e.name)
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
