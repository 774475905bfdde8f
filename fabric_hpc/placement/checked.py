"""Public models whose direct construction fails like their parsers: one ConfigError, never pydantic's.

``Request(gpus=-3)`` or ``CostWeights(span=-1)`` raise the :class:`~fabric_hpc.errors.ConfigError`
that :func:`~fabric_hpc.validation.parse_model` words (field, problem, what was given), with a hint
naming the fix. Only the call of the class is wrapped (its metaclass's ``__call__``): pydantic's
``model_validate`` / ``model_validate_json`` do not go through it and behave exactly as before (JSON
arrays are tuples there, and their ValidationError is what ``parse_model`` turns into its ConfigError,
with the caller's source and hint). A custom ``__init__`` would not do: pydantic then validates JSON
input through it in Python mode.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from fabric_hpc.validation import StrictModel, parse_model


class _CheckedCall(type(StrictModel)):  # type: ignore[misc]  # pydantic's model metaclass
    def __call__(cls, *args: Any, **data: Any) -> Any:
        try:
            return super().__call__(*args, **data)
        except ValidationError:
            if args:  # BaseModel takes keywords only: let pydantic say so
                raise
            parse_model(cls, data, source=cls.__name__, hint=cls._hint)  # raises its ConfigError
            raise


class CheckedModel(StrictModel, metaclass=_CheckedCall):
    """A :class:`StrictModel` whose constructor raises ConfigError (``_hint``: the fix)."""

    _hint: ClassVar[str] = "see docs/placement.md"
