"""Public models whose direct construction fails like their parsers: one ConfigError, never pydantic's.

``Request(gpus=-3)`` or ``CostWeights(span=-1)`` raise the :class:`~fabric_hpc.errors.ConfigError`
that :func:`~fabric_hpc.validation.parse_model` words (field, problem, what was given), with a hint
naming the fix. ``model_validate`` / ``model_validate_json`` keep pydantic's ValidationError, which
:func:`~fabric_hpc.validation.parse_model` itself turns into its ConfigError (with the caller's source
and hint).
"""

from __future__ import annotations

import contextvars
from typing import Any, ClassVar

from pydantic import ValidationError

from fabric_hpc.validation import StrictModel, parse_model

#: set while ``model_validate*`` runs: pydantic calls ``__init__`` then, and wants its own error back
_VALIDATING: contextvars.ContextVar[bool] = contextvars.ContextVar("fabric_validating", default=False)


class CheckedModel(StrictModel):
    """A :class:`StrictModel` whose constructor raises ConfigError (``_hint``: the fix)."""

    _hint: ClassVar[str] = "see docs/placement.md"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError:
            if _VALIDATING.get():
                raise
            parse_model(type(self), data, source=type(self).__name__, hint=self._hint)  # raises its ConfigError
            raise

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        token = _VALIDATING.set(True)
        try:
            return super().model_validate(obj, **kwargs)
        finally:
            _VALIDATING.reset(token)

    @classmethod
    def model_validate_json(cls, json_data: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        token = _VALIDATING.set(True)
        try:
            return super().model_validate_json(json_data, **kwargs)
        finally:
            _VALIDATING.reset(token)
