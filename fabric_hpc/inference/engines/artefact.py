"""The PyTorch engine's artefact: ``fabric_engine.json`` beside a Hugging Face Llama
``config.json`` (and weights, or a fabric checkpoint to serve): its schema, how it is prepared
and how it is read. :mod:`.pytorch` builds engines from it.

Artefact (``engine_dir``): a Hugging Face Llama model directory -- ``config.json`` plus
``*.safetensors`` weights (as ``save_pretrained`` writes them) -- and ``fabric_engine.json``,
the build limits the engine is prepared with (:func:`prepare_pytorch_engine` writes it)::

    {"format": "fabric-pytorch-engine-1", "dtype": "bfloat16", "max_batch_size": 256,
     "max_input_len": 1024, "max_seq_len": 1280, "max_num_tokens": 8192,
     "tensor_parallel_size": 1, "weights": "safetensors"}      # or "weights": "random", "seed": 0

or, serving a fabric checkpoint step directly (``config.json`` then comes from the checkpoint)::

     "weights": "fabric-checkpoint",
     "checkpoint": {"path": "/ckpts/run1", "step": 1200, "prefix": "model", "naming": "huggingface"}

``fabric_engine.json`` is validated strictly (unknown or missing keys are errors). The nine-field
engine config is checked against it: ``architecture`` against ``config.json``'s
``architectures[0]``, the other six against ``fabric_engine.json``; a checkpoint's manifest is
checked too (step present, names/shapes/dtypes fit ``config.json``: :mod:`.ckpt_weights`).
``"weights": "random"`` builds seeded random weights of the ``config.json`` shape (benchmarks,
tests; no download is possible on CI machines).

torch is imported only when an engine is built or an artefact with weights is prepared.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inference.engines.spec import ARCHITECTURE, PRESETS, LlamaSpec
from fabric_hpc.validation import StrictModel, parse_model

__all__ = ["ENGINE_FILE", "EngineBuild", "prepare_pytorch_engine", "read_pytorch_artefact"]

ENGINE_FILE = "fabric_engine.json"
FORMAT = "fabric-pytorch-engine-1"
_LIMIT_KEYS = ("dtype", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens",
               "tensor_parallel_size")
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist ({what})",
                            hint="prepare the directory: `fabric infer prepare ENGINE_DIR --checkpoint CKPT "
                                 "...` from the command line, prepare_pytorch_engine() from Python; see "
                                 "docs/engines.md")
    from fabric_hpc.inference.engine import MAX_ARTEFACT_JSON
    from fabric_hpc.inputs import read_json
    try:  # size, UTF-8 and depth limits: an error naming the file, never a traceback
        # a Hugging Face config.json may hold NaN (Python's json.dump writes it): from_hf_config judges
        doc = read_json(path, what=what, limit=MAX_ARTEFACT_JSON, nonfinite=path.name == "config.json")
    except ConfigError as exc:
        raise ConfigError(f"not readable JSON: {exc.message}", hint=exc.hint) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return doc


class CheckpointWeights(StrictModel):
    """Where a ``fabric-checkpoint`` engine reads its weights (all four fields required)."""

    path: str = Field(min_length=1)
    step: int = Field(ge=0)
    prefix: str
    naming: Literal["huggingface", "megatron"]


class EngineBuild(StrictModel):
    """``fabric_engine.json``: the build limits and where the weights come from."""

    format: Literal["fabric-pytorch-engine-1"]
    dtype: Literal["float32", "float16", "bfloat16"]
    max_batch_size: int = Field(ge=1)
    max_input_len: int = Field(ge=1)
    max_seq_len: int = Field(ge=2)
    max_num_tokens: int = Field(ge=1)
    tensor_parallel_size: int = Field(ge=1)
    weights: Literal["safetensors", "random", "fabric-checkpoint"]
    seed: int | None = None
    preset: str | None = None
    checkpoint: CheckpointWeights | None = None

    @model_validator(mode="after")
    def _weights_fields(self) -> EngineBuild:
        if (self.weights == "fabric-checkpoint") != (self.checkpoint is not None):
            raise ValueError("'checkpoint' is required with weights: fabric-checkpoint, and only there")
        if (self.weights == "random") != (self.seed is not None) or \
                (self.preset is not None and self.weights != "random"):
            raise ValueError("'seed' (and optionally 'preset') go with weights: random, and only there")
        return self


def read_build(engine_dir: Path) -> EngineBuild:
    """``fabric_engine.json`` of ``engine_dir``, validated strictly."""
    path = Path(engine_dir) / ENGINE_FILE
    return parse_model(EngineBuild, _read_json(path, "the engine's build limits"), source=str(path),
                       hint="prepare the directory again with prepare_pytorch_engine(); see "
                            "docs/engines.md")


def _checkpoint_plan(engine_dir: Path, src: CheckpointWeights, spec: LlamaSpec) -> Any:
    """Open the checkpoint ``src`` names (manifest only) and plan its weights for ``spec``;
    the checkpoint's own config.json (when it carries one) must describe the same model."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.errors import CheckpointNotFoundError
    from fabric_hpc.inference.engines.ckpt_weights import plan_weights

    try:
        ckpt = open_checkpoint(engine_dir / src.path, src.step)
    except CheckpointNotFoundError as exc:  # pruned since (a pin keeps it: _pin)
        raise CheckpointNotFoundError(
            f"checkpoint step {src.step} that {engine_dir} was prepared from is gone ({exc.message})",
            hint=f"prepare the engine again: fabric infer prepare {engine_dir} --checkpoint {src.path} "
                 "[--step N] ... (into a new OUTPUT: items done so far used the old weights)") from None
    if ckpt.step != src.step:
        raise ConfigError(f"{ckpt.path} is step {ckpt.step}, {ENGINE_FILE} says {src.step}")
    carried = _carried_config(ckpt)
    if carried is not None and LlamaSpec.from_hf_config(carried, source=f"{ckpt.path} config.json") != spec:
        raise ConfigError(f"{engine_dir / 'config.json'} and the config.json carried by checkpoint "
                          f"{ckpt.path} describe different models",
                          hint="prepare the engine again from the checkpoint")
    return plan_weights(ckpt, spec, prefix=src.prefix, naming=src.naming)


def _carried_config(ckpt: Any) -> dict[str, Any] | None:
    """The config.json a checkpoint carries, with the NaN/Infinity an import found in it put back."""
    from fabric_hpc.checkpoint.interop.hf import NONFINITE, restore_nonfinite

    meta = ckpt.manifest.user_metadata
    files = meta.get("hf_files")
    doc = files.get("config.json") if isinstance(files, dict) else None
    where = meta.get(NONFINITE, {}).get("config.json") if isinstance(meta.get(NONFINITE), dict) else None
    if isinstance(doc, dict) and isinstance(where, dict):
        doc = restore_nonfinite(doc, where)
    return doc if isinstance(doc, dict) else None


def check_limits(*, max_input_len: int, max_seq_len: int, max_num_tokens: int) -> None:
    """The build limits' rules, as ``trtllm-build`` has them without chunked context (this engine
    and the harness never split a prompt): ``max_input_len <= max_seq_len`` (TensorRT-LLM asserts
    it) and ``max_num_tokens >= max_input_len`` (TensorRT-LLM raises max_num_tokens to
    max_input_len with a warning; refused here, so no item is dead-lettered for it at run time).
    ``max_num_tokens`` above ``max_batch_size * max_seq_len`` is allowed (it is never reached)."""
    if max_input_len > max_seq_len:
        raise ConfigError(f"max_input_len {max_input_len} is larger than max_seq_len {max_seq_len} "
                          f"(prompt + generated tokens): prompts that long could never run",
                          hint=f"raise max_seq_len to at least {max_input_len} (plus the tokens to "
                               f"generate), or lower max_input_len")
    if max_num_tokens < max_input_len:
        raise ConfigError(f"max_num_tokens {max_num_tokens} is smaller than max_input_len {max_input_len}: "
                          f"a prompt's prefill must fit in one batch (no chunked context), so prompts longer "
                          f"than {max_num_tokens} tokens would be dead-lettered",
                          hint=f"raise max_num_tokens to at least {max_input_len}, or lower max_input_len "
                               f"to {max_num_tokens}")


def _owned_build(path: Path) -> dict[str, Any] | None:
    """The ``fabric_engine.json`` an earlier prepare wrote in ``path`` (None if there is none);
    ConfigError when a file of that name is there but was not written by a prepare."""
    file = path / ENGINE_FILE
    if not os.path.lexists(file):
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8")) if file.is_file() and not file.is_symlink() else None
    except (OSError, ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{file} exists and was not written by prepare (not a {FORMAT} file): not replacing it",
                          hint="give a new or empty ENGINE_DIR, or remove that file if it is not needed")
    return doc


def _check_engine_dir(path: Path, *, writes_config: bool) -> bool:
    """Refuse an ``engine_dir`` inside a checkpoint, not a directory, or (when this prepare writes
    ``config.json``) non-empty and not prepared before. True when ``config.json`` there is one a
    prepare wrote (a preset or a checkpoint's), so it may be replaced."""
    from fabric_hpc.checkpoint.writer import refuse_inside_checkpoint
    refuse_inside_checkpoint(path, "the engine directory")
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"engine directory {str(path)!r} exists and is not a directory",
                          hint="give a new directory (or one an earlier prepare wrote)")
    if not path.is_dir():
        return True
    build = _owned_build(path)
    if build is not None:
        return build.get("weights") != "safetensors"
    if writes_config and set(os.listdir(path)) - {"config.json"}:
        raise ConfigError(f"engine directory {str(path)!r} is not empty and was not written by prepare "
                          f"(no {ENGINE_FILE}): not writing into it",
                          hint="give a new or empty directory (prepare creates it); a directory an earlier "
                               "prepare wrote is refreshed")
    return False


def _write_config(path: Path, doc: dict[str, Any], owned: bool) -> None:
    """Write ``config.json`` unless that would replace a different one prepare did not write."""
    target = path / "config.json"
    if not owned and target.is_file():
        try:
            # compared as text: a NaN a Hugging Face config may hold is unequal to itself
            same = json.dumps(json.loads(target.read_text(encoding="utf-8")), sort_keys=True) == \
                json.dumps(doc, sort_keys=True)
        except (OSError, ValueError, RecursionError):
            same = False
        if not same:
            raise ConfigError(f"{target} exists and was not written by prepare: not replacing it with "
                              f"the model config this prepare writes",
                              hint="give a new or empty ENGINE_DIR (prepare creates it)")
    write_atomic(target, json.dumps(doc, indent=2))


def read_pytorch_artefact(engine_dir: Path) -> dict[str, Any]:
    """The nine-field view of a PyTorch engine directory (see the module docstring); a
    checkpoint it serves is checked against ``config.json`` from its manifest."""
    engine_dir = Path(engine_dir)
    if not engine_dir.is_dir():
        raise NotFoundError(f"engine directory {engine_dir} does not exist",
                            hint="engine_dir must point at a prepared model directory")
    model = _read_json(engine_dir / "config.json", "the model's Hugging Face config")
    build = read_build(engine_dir)
    if build.weights == "fabric-checkpoint":
        assert build.checkpoint is not None
        _checkpoint_plan(engine_dir, build.checkpoint,
                         LlamaSpec.from_hf_config(model, source=str(engine_dir / "config.json")))
    # a config without ``architectures`` (``LlamaConfig().to_dict()``: transformers adds it only in
    # save_pretrained) is read as the Llama the engine runs when its model_type is llama (or absent), as
    # LlamaSpec.from_hf_config reads it; another model_type states no architecture
    llama = model.get("model_type", "llama") == "llama"
    archs = model.get("architectures") or [ARCHITECTURE if llama else None]
    return {"architecture": archs[0], **{k: getattr(build, k) for k in _LIMIT_KEYS}}


def prepare_pytorch_engine(engine_dir: str | Path, *, dtype: str, max_batch_size: int,
                           max_input_len: int, max_seq_len: int, max_num_tokens: int,
                           preset: str | None = None, seed: int = 0,
                           checkpoint: str | Path | None = None, step: int | None = None,
                           prefix: str | None = None) -> dict[str, Any]:
    """Write ``fabric_engine.json`` (and, with ``preset`` or ``checkpoint``, ``config.json``);
    return the matching nine-field engine config.

    Without ``preset``/``checkpoint`` the directory must already hold a Hugging Face Llama model
    (``config.json`` + ``*.safetensors``, e.g. from ``save_pretrained``). ``checkpoint`` (a
    fabric checkpoint root or step directory; ``step`` or latest, pinned here) serves that step
    directly: ``config.json`` is the one the checkpoint carries (``fabric ckpt import-hf``, or
    ``user_metadata.hf_files`` of a save), else one already in ``engine_dir``; ``prefix`` is the
    subtree holding the model (default: top level, else ``model``). A directory this call created
    is removed again when it fails (nothing half-prepared is left behind)."""
    path = Path(engine_dir)
    created = not os.path.lexists(path)
    try:
        return _prepare_pytorch_engine(path, dtype=dtype, max_batch_size=max_batch_size,
                                       max_input_len=max_input_len, max_seq_len=max_seq_len,
                                       max_num_tokens=max_num_tokens, preset=preset, seed=seed,
                                       checkpoint=checkpoint, step=step, prefix=prefix)
    except BaseException:
        if created and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        raise


def _check_arguments(dtype: str, **limits: int) -> None:
    """The build limits, named as :func:`prepare_pytorch_engine`'s arguments, before anything is written
    (not as a ``fabric_engine.json`` that is not there yet)."""
    doc = {"format": FORMAT, "dtype": dtype, **limits, "tensor_parallel_size": 1, "weights": "safetensors"}
    parse_model(EngineBuild, doc, source="prepare_pytorch_engine()",
                hint="give whole numbers: max_batch_size, max_input_len and max_num_tokens >= 1, "
                     "max_seq_len >= 2")


def _prepare_pytorch_engine(path: Path, *, dtype: str, max_batch_size: int, max_input_len: int, max_seq_len: int,
                            max_num_tokens: int, preset: str | None, seed: int, checkpoint: str | Path | None,
                            step: int | None, prefix: str | None) -> dict[str, Any]:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported by the PyTorch engine",
                          hint=f"one of {sorted(_DTYPES)}")
    _check_arguments(dtype, max_batch_size=max_batch_size, max_input_len=max_input_len,
                     max_seq_len=max_seq_len, max_num_tokens=max_num_tokens)
    check_limits(max_input_len=max_input_len, max_seq_len=max_seq_len, max_num_tokens=max_num_tokens)
    if preset is not None and checkpoint is not None:
        raise ConfigError("give a preset (random weights) or a checkpoint, not both")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}", hint=f"one of {sorted(PRESETS)}")
    owned = _check_engine_dir(path, writes_config=preset is not None or checkpoint is not None)
    if preset is not None:
        path.mkdir(parents=True, exist_ok=True)
        _write_config(path, PRESETS[preset].hf_config(dtype), owned)
        weights: dict[str, Any] = {"weights": "random", "seed": seed, "preset": preset}
    elif checkpoint is not None:
        weights = _prepare_checkpoint(path, Path(checkpoint), step, prefix, owned)
    else:
        spec_doc = _read_json(path / "config.json", "the model's Hugging Face config")
        LlamaSpec.from_hf_config(spec_doc, source=str(path / "config.json"))
        if not sorted(path.glob("*.safetensors")):
            raise ConfigError(f"{path} holds no *.safetensors weights",
                              hint="save the model with save_pretrained(dir) (safetensors), or "
                                   "pass preset= for random weights")
        weights = {"weights": "safetensors"}
    if (path / "config.json").is_file():  # refused here, not at the first run
        spec = LlamaSpec.from_hf_config(_read_json(path / "config.json", "the model's Hugging Face config"))
        if max_seq_len > spec.max_position_embeddings:
            raise ConfigError(f"max_seq_len {max_seq_len} exceeds the model's max_position_embeddings "
                              f"{spec.max_position_embeddings}", hint="ask for a shorter max_seq_len")
    doc = {"format": FORMAT, "dtype": dtype, "max_batch_size": max_batch_size,
           "max_input_len": max_input_len, "max_seq_len": max_seq_len,
           "max_num_tokens": max_num_tokens, "tensor_parallel_size": 1, **weights}
    parse_model(EngineBuild, doc, source=str(path / ENGINE_FILE))
    write_atomic(path / ENGINE_FILE, json.dumps(doc, indent=2))
    if weights.get("weights") == "fabric-checkpoint":
        _pin(path, weights["checkpoint"])
    return {"engine": "pytorch", "engine_dir": str(path.resolve()), "architecture": ARCHITECTURE,
            "dtype": dtype, "max_batch_size": max_batch_size, "max_input_len": max_input_len,
            "max_seq_len": max_seq_len, "max_num_tokens": max_num_tokens,
            "tensor_parallel_size": 1}


def _pin(engine_dir: Path, src: dict[str, Any]) -> None:
    """Pin the step in its checkpoint root, so ``fabric ckpt prune`` keeps it (docs/checkpoint.md);
    one pin per engine directory (a new prepare moves it). A root this user may not write gets no
    pin: said as an ``infer.pin_failed`` event, and prepare goes on (the step is read, not changed)."""
    import hashlib

    from fabric_hpc.checkpoint.errors import CheckpointError
    from fabric_hpc.checkpoint.pins import pin_step
    from fabric_hpc.events import emit

    target = str(engine_dir.resolve())
    try:
        pin_step(src["path"], src["step"], key=hashlib.sha256(target.encode()).hexdigest()[:16],
                 by="fabric infer prepare", target=target)
    except (OSError, CheckpointError) as exc:
        emit("infer.pin_failed", root=src["path"], step=src["step"], error=str(exc)[:300])


def _prepare_checkpoint(path: Path, checkpoint: Path, step: int | None,
                        prefix: str | None, owned: bool) -> dict[str, Any]:
    """The ``weights`` part of fabric_engine.json for a checkpoint step (checked now)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.inference.engines.ckpt_weights import detect_naming, subtree_names

    ckpt = open_checkpoint(checkpoint, step)
    if not ckpt.path.name.startswith("step-"):
        raise ConfigError(f"{ckpt.path} is not a committed step directory of a checkpoint root",
                          hint="point at the checkpoint root (and --step) or at ROOT/step-NNNNNNNNNN")
    config = _carried_config(ckpt)
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        _write_config(path, config, owned)
    elif not (path / "config.json").is_file():
        raise ConfigError(f"checkpoint {ckpt.path} carries no config.json and {path} has none",
                          hint="put the model's Hugging Face config.json into the engine directory, "
                               "or save the checkpoint with metadata={'hf_files': {'config.json': ...}}")
    spec = LlamaSpec.from_hf_config(_read_json(path / "config.json", "model config"),
                                    source=str(path / "config.json"))
    if prefix is None:  # top level, else the subtree `model` (a save of {"model": ...})
        prefix = next((p for p in ("", "model") if detect_naming(subtree_names(ckpt, p))), "")
    prefix = prefix.strip("/")
    names = subtree_names(ckpt, prefix)
    naming = detect_naming(names)
    if names and naming is None:  # none: plan_weights says the prefix holds no tensors
        raise ConfigError(f"checkpoint {ckpt.path} (prefix {prefix!r}): tensor names are neither Hugging Face nor "
                          f"Megatron-core Llama names (e.g. {sorted(names)[0]})",
                          hint="give --prefix (prefix=) the subtree holding the model (`fabric ckpt show` lists the "
                               "names), or convert it to Hugging Face names (`fabric ckpt convert`)")
    src = {"path": str(ckpt.path.parent.resolve()), "step": ckpt.step, "prefix": prefix,
           "naming": naming or "huggingface"}
    # names, shapes, dtypes: refused now, not later on every rank
    _checkpoint_plan(path, CheckpointWeights(**src), spec)
    return {"weights": "fabric-checkpoint", "checkpoint": src}
