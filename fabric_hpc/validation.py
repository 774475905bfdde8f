"""Fail-closed configuration models.

Every configuration object in fabric-hpc is a :class:`StrictModel`: frozen, strictly typed,
unknown keys rejected, required fields without defaults. :func:`parse_model` turns pydantic's
errors into one :class:`~fabric_hpc.errors.ConfigError` whose lines name the source (file and,
where known, line), the field, the problem and the valid choices; at most :data:`MAX_PROBLEMS`
lines, then how many more.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fabric_hpc.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]

#: Problems listed in one validation error; the rest are counted ("... and N more").
MAX_PROBLEMS = 20


def list_problems(problems: Sequence[str]) -> str:
    """The first :data:`MAX_PROBLEMS` problems, one a line, then ``... and N more`` if there are more."""
    shown = list(problems[:MAX_PROBLEMS])
    more = len(problems) - len(shown)
    return "\n".join(shown + ([f"... and {more} more"] if more else []))


class StrictModel(BaseModel):
    """Base for configuration: unknown keys and wrong types are errors; instances are frozen;
    NaN and ±infinity are refused in every float field (no configuration needs them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'gpus'?"`` naming the choice closest to a mistyped ``word`` (difflib), or ""."""
    near = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (walks nested models, lists, dicts)."""
    current: Any = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if isinstance(part, int) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        # containers consume the next part (a list index or a dict key)
        while _is_container(annotation) and parts:
            parts.pop(0)
            annotation = _unwrap(annotation)
        current = _unwrap_optional(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _non_none_args(annotation: Any) -> list[Any]:
    return [a for a in typing.get_args(annotation) if a is not type(None)]


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is None or _is_container(annotation):
        return annotation
    models = [a for a in _non_none_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if models else annotation


def _is_container(annotation: Any) -> bool:
    origin = typing.get_origin(_unwrap_optional_shallow(annotation))
    return origin in (list, tuple, Sequence, set, frozenset, dict, Mapping)


def _unwrap_optional_shallow(annotation: Any) -> Any:
    args = _non_none_args(annotation)
    if typing.get_origin(annotation) is not None and typing.get_origin(annotation) not in (
            list, tuple, Sequence, set, frozenset, dict, Mapping) and len(args) == 1:
        return args[0]
    return annotation


def _unwrap(annotation: Any) -> Any:
    """The element type of a (possibly optional) list/dict annotation."""
    annotation = _unwrap_optional_shallow(annotation)
    args = _non_none_args(annotation)
    return args[-1] if args else annotation


def _describe(model: type[BaseModel], err: dict[str, Any]) -> tuple[Loc, str]:
    loc: Loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "<top level>"
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1]) if len(loc) > 1 else model
        valid = ", ".join(sorted(owner.model_fields)) if owner else "see the documentation"
        meant = did_you_mean(str(loc[-1]), list(owner.model_fields)) if owner else ""
        return loc, f"unknown key {loc[-1]!r} at {path}{meant} (valid keys: {valid})"
    if kind == "missing":
        return loc, f"missing required field {path}"
    msg = err["msg"].removeprefix("Value error, ")  # our own validators' words, without pydantic's prefix
    if not loc:  # a check of the whole model: its message says what is wrong
        return loc, msg
    return loc, f"{path}: {msg} (got {err.get('input')!r}){_yaml_text(err)}{_unit(model, loc)}"


_YAML11_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml_text(err: dict[str, Any]) -> str:
    """Why a number came as text: YAML 1.1 (PyYAML) reads ``2e3`` or ``1e9`` as a string (its
    floats need a dot and a signed exponent), so a number field gets ``'2e3'``."""
    value = err.get("input")
    if not (isinstance(value, str) and _YAML11_NUMBER.fullmatch(value.strip())):
        return ""
    number = float(value)
    plain = str(int(number)) if number.is_integer() and abs(number) < 1e15 else None
    mantissa, _, exp = f"{number:e}".partition("e")
    sci = f"{float(mantissa):.6g}".rstrip("0") + ("" if "." in f"{float(mantissa):.6g}" else ".0")
    sci += f"e{int(exp):+d}"
    written = f"{plain} or {sci}" if plain else sci
    return f": YAML read {value!r} as text, not a number (write it as {written})"


def _unit(model: type[BaseModel], loc: Loc) -> str:
    """``; <key> is <its description>`` for a field that declares one (units: ``GB/s per NIC``)."""
    owner = _model_at(model, loc[:-1]) if len(loc) > 1 else model
    field = owner.model_fields.get(loc[-1]) if owner is not None and isinstance(loc[-1], str) else None
    return f"; {loc[-1]} is {field.description}" if field is not None and field.description else ""


def parse_model(
    model: type[M],
    data: Any,
    *,
    source: str,
    locate: Callable[[Loc], int | None] | None = None,
    hint: str | None = None,
) -> M:
    """Validate ``data`` into ``model`` or raise one ConfigError naming its problems (the first
    :data:`MAX_PROBLEMS`, then how many more).

    ``source`` names where the data came from (a file path, "--request"); ``locate`` maps an
    error location to a 1-based line number in that source when it is known.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}",
            hint=hint or f"valid keys: {', '.join(sorted(model.model_fields))}",
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc, text = _describe(model, err)
            line = locate(loc) if locate else None
            where = f"{source}:{line}" if line else source
            lines.append(f"{where}: {text}")
        raise ConfigError(list_problems(lines), hint=hint) from None
