"""The convert recipe: a small declarative file (YAML or JSON), strictly validated.

Stages run in this order, each on the names the previous one produced:

0. ``pipeline`` with ``mode: merge`` (stage-local layer numbers -> global ones, see
   :mod:`fabric_hpc.checkpoint.convert.pipeline`), so every later stage sees global names;
1. ``rename``: regex rules applied in order to every name (``re.sub``, e.g. Megatron-style ->
   Hugging Face Llama names); then ``transpose`` (2-d tensors matching a pattern, e.g. GPT-2's
   Conv1D ``[in, out]`` weights <-> Linear ``[out, in]``; ``after_fuse: true`` runs after stage 2);
2. ``fuse_qkv`` / ``split_qkv``: separate q/k/v projections <-> one fused tensor with
   grouped-query heads, in ``concat`` ([Q; K; V], as vLLM's qkv_proj) or ``grouped`` (per KV
   group [q heads, k, v], as Megatron's linear_qkv) layout; ``fuse`` / ``split``: row
   concatenation (gate/up);
   then ``transpose`` rules with ``after_fuse: true``, then ``pipeline`` with ``mode: split``
   (global layer numbers -> stage-local ones under stage prefixes) and ``drop``;
3. ``cast``: dtype per name pattern (fp32 <-> bf16 <-> fp16, and -> fp8 e4m3/e5m2 with a
   float32 ``*_scale`` tensor beside each weight);
4. ``tp``: tensor-parallel layout (column / row parallel, head-aware for attention, vocabulary
   padding).

Templates (``q``, ``k``, ``into`` ...) are names in which ``{i}`` stands for a layer number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fabric_hpc.checkpoint.errors import CheckpointError, CheckpointNotFoundError
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.checkpoint.format import FP8_DTYPES
from fabric_hpc.validation import StrictModel, parse_model

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
#: Largest recipe or calibration file read (bytes): a recipe is a page of rules.
MAX_RECIPE_BYTES = 16 << 20


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class Rename(StrictModel):
    pattern: str
    replace: str

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))


class Heads(StrictModel):
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    layout: Literal["concat", "grouped"] = "concat"

    def check(self) -> None:
        if self.heads % self.kv_heads:
            raise CheckpointError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")


class FuseQKV(Heads):
    q: str
    k: str
    v: str
    into: str


class SplitQKV(Heads):
    fused: str
    q: str
    k: str
    v: str


class Fuse(StrictModel):
    parts: list[str] = Field(min_length=2)
    into: str


class Split(StrictModel):
    fused: str
    parts: list[str] = Field(min_length=2)
    rows: list[int] | None = None  # default: equal parts


class Transpose(StrictModel):
    match: str
    after_fuse: bool = False  # False: after renames, before fuse/split; True: after fuse/split

    _check = field_validator("match")(classmethod(lambda cls, v: _regex(v)))


class InputScale(StrictModel):
    """The static activation scale written beside an fp8 weight (vLLM's ``input_scale``): from a
    calibration file (``{module: activation abs-max}``, scale = amax / fp8 max) or one explicit
    value; exactly one of the two. There is no default: without it no input_scale is written."""

    calibration: str | None = None
    value: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> InputScale:
        if (self.calibration is None) == (self.value is None):
            raise ValueError("give exactly one of calibration (a file) or value (an explicit scale)")
        return self


class Cast(StrictModel):
    match: str
    to: Literal["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]
    scale: Literal["tensor", "channel"] = "tensor"  # fp8 only
    input_scale: InputScale | None = None  # fp8 only: static activation scale beside the weight

    _check = field_validator("match")(classmethod(lambda cls, v: _regex(v)))

    @model_validator(mode="after")
    def _fp8_only(self) -> Cast:
        if self.input_scale is not None and self.to not in FP8_DTYPES:
            raise ValueError("input_scale goes with an fp8 cast (to: float8_e4m3fn or float8_e5m2)")
        return self


class AttentionTP(Heads):
    match: str  # fused qkv tensors (layout as given) or, with `kind`, separate q / kv tensors
    kind: Literal["fused", "q", "kv"] = "fused"

    _check = field_validator("match")(classmethod(lambda cls, v: _regex(v)))


class TensorParallel(StrictModel):
    size: int = Field(gt=0)
    column: list[str] = []   # split along dim 0 (output features)
    row: list[str] = []      # split along dim 1 (input features)
    attention: list[AttentionTP] = []
    kv_short: Literal["refuse", "replicate"] = "refuse"  # when size > kv_heads
    vocab: list[str] = []    # padded with zero rows to a multiple of vocab_multiple_of
    vocab_multiple_of: int = Field(default=0, ge=0)  # 0: size

    @field_validator("column", "row", "vocab")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return [_regex(x) for x in v]


class Pipeline(StrictModel):
    """Pipeline stages merged (stage-local layer numbers -> global) or split (the inverse)."""

    mode: Literal["merge", "split"]
    layers: list[int] = Field(min_length=1)  # layers of each stage, in stage order (uneven allowed)
    stage_layer: str    # a stage-local layer's name prefix, e.g. 'pp{s}/decoder.layers.{i}.'
    layer: str          # the same layer in global numbering, e.g. 'decoder.layers.{i}.'
    stage: str          # a stage's prefix for its other tensors, e.g. 'pp{s}/'
    first: list[str] = []  # split: other tensors (regex) that go to the first stage
    last: list[str] = []   # split: ... to the last stage

    @field_validator("layers")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if any(k < 0 for k in v) or not sum(v):
            raise ValueError("layer counts must be >= 0 with at least one layer")
        return v

    @field_validator("stage_layer", "layer", "stage")
    @classmethod
    def _placeholders(cls, v: str, info: Any) -> str:
        need = {"stage_layer": ("{s}", "{i}"), "layer": ("{i}",), "stage": ("{s}",)}[info.field_name]
        missing = [p for p in need if v.count(p) != 1]
        extra = [p for p in ("{s}", "{i}") if p not in need and p in v]
        if missing or extra:
            raise ValueError(f"must contain {' and '.join(need)} once each" + (f", not {extra[0]}" if extra else ""))
        return v

    @field_validator("first", "last")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return [_regex(x) for x in v]


class Recipe(StrictModel):
    """A convert recipe; see the module doc and docs/checkpoint.md."""

    rename: list[Rename] = []
    pipeline: Pipeline | None = None
    transpose: list[Transpose] = []
    fuse_qkv: list[FuseQKV] = []
    split_qkv: list[SplitQKV] = []
    fuse: list[Fuse] = []
    split: list[Split] = []
    cast: list[Cast] = []
    tp: TensorParallel | None = None
    drop: list[str] = []     # names (after rename) to leave out

    @field_validator("drop")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return [_regex(x) for x in v]

    @field_validator("transpose", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:  # a bare pattern: transposed right after the renames
        return [{"match": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v


def load_recipe(source: Recipe | Mapping[str, Any] | str | Path) -> Recipe:
    """A Recipe from a mapping or a .yaml/.yml/.json file; unknown keys are errors."""
    if isinstance(source, Recipe):
        return source
    name = "recipe"
    if not isinstance(source, Mapping):
        path = Path(source)
        source = read_document(path, "recipe")
        name = str(path)
        source = _calibration_paths(source, path.parent)
    keys = "recipe keys: rename, pipeline, transpose, fuse_qkv, split_qkv, fuse, split, cast, tp, drop " \
           "(see docs/checkpoint.md#convert)"
    bad = bad_regexes(source)
    hint = keys if not bad else "correct the regular expression" + ("s " if len(bad) > 1 else " ") + "; ".join(
        f"{loc} {pattern!r} ({why})" for loc, pattern, why in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return parse_model(Recipe, source, source=name, hint=hint)


def read_document(path: Path, what: str) -> Any:
    """A recipe's or calibration file's document, through the input boundary (fabric_hpc/inputs.py):
    a regular file (a directory or FIFO is refused before it is opened) of at most MAX_RECIPE_BYTES,
    UTF-8; YAML (.yaml/.yml) without anchors or duplicate keys, else JSON. A missing file is a
    CheckpointNotFoundError, any other bad file a CheckpointError (both exit 3)."""
    from fabric_hpc.inputs import load_json, load_yaml, read_text

    try:
        text = read_text(path, what=what, limit=MAX_RECIPE_BYTES)
        if path.suffix in (".yaml", ".yml"):
            return load_yaml(text, str(path))[0]
        return load_json(text, str(path))
    except NotFoundError as exc:
        raise CheckpointNotFoundError(exc.message, hint=exc.hint) from None
    except CheckpointError:
        raise
    except ConfigError as exc:
        raise CheckpointError(exc.message, hint=exc.hint) from None


#: recipe keys holding one regex, and keys holding a list of them (see the models above)
_REGEX_KEYS, _REGEX_LIST_KEYS = ("pattern", "match"), ("column", "row", "vocab", "first", "last", "drop", "transpose")


def bad_regexes(source: Any, loc: str = "") -> list[tuple[str, str, str]]:
    """(location, pattern, error) of every regex field of a raw recipe that does not compile."""
    out: list[tuple[str, str, str]] = []
    items = source.items() if isinstance(source, Mapping) else enumerate(source) if isinstance(source, list) else ()
    for key, value in items:
        where = f"{loc}.{key}" if loc else str(key)
        tail = str(key) if isinstance(key, str) else loc.rsplit(".", 1)[-1]
        if isinstance(value, str) and (key in _REGEX_KEYS or (isinstance(key, int) and tail in _REGEX_LIST_KEYS)):
            try:
                re.compile(value)
            except re.error as exc:
                out.append((where, value, str(exc)))
        elif isinstance(value, (Mapping, list)):
            out.extend(bad_regexes(value, where))
    return out


def _calibration_paths(source: Any, base: Path) -> Any:
    """Calibration files named in a recipe file are relative to the recipe's directory."""
    if not isinstance(source, dict) or not isinstance(source.get("cast"), list):
        return source
    casts = []
    for rule in source["cast"]:
        isc = rule.get("input_scale") if isinstance(rule, dict) else None
        if isinstance(isc, dict) and isinstance(isc.get("calibration"), str):
            rule = {**rule, "input_scale": {**isc, "calibration": str(base / isc["calibration"])}}
        casts.append(rule)
    return {**source, "cast": casts}


def load_calibration(path: str) -> dict[str, float]:
    """A calibration file (JSON or YAML): module name -> activation abs-max (a positive number)."""
    import math
    file = Path(path)
    try:
        data = read_document(file, "calibration file")
    except CheckpointNotFoundError as exc:
        raise CheckpointNotFoundError(exc.message,
                                      hint="input_scale.calibration is relative to the recipe file") from None
    bad = [k for k, v in (data.items() if isinstance(data, dict) else [])
           if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0]
    if not isinstance(data, dict) or bad:
        raise CheckpointError(f"{file}: expected {{module: activation abs-max > 0}}"
                              + (f"; bad values for {bad[:3]}" if bad else ""),
                              hint='e.g. {"model.layers.0.self_attn.q_proj": 12.5}')
    return {str(k): float(v) for k, v in data.items()}


def template(text: str) -> re.Pattern[str]:
    """A name template with ``{i}`` (a layer number) as a full-match regex."""
    parts = text.split("{i}")
    return re.compile("(?P<i>\\d+)".join(re.escape(p) for p in parts[:2]) +
                      "".join("(?P=i)" + re.escape(p) for p in parts[2:]) + "$")


def fill(text: str, i: str | None) -> str:
    return text.replace("{i}", i or "")
