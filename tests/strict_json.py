"""Every ``--json`` output printed in-process during the tests, parsed with a strict parser.

``tests/conftest.py`` wraps :func:`fabric_hpc.cli.output.dumps_json` (the one place every command
turns ``--json`` data into text) for every test and, when the test ends, parses each text with
``json.loads(..., parse_constant=reject)``: ``NaN``/``Infinity`` fail the test that printed them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest


def reject(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def strict_loads(text: str) -> Any:
    return json.loads(text, parse_constant=reject)


@pytest.fixture(autouse=True)
def strict_json_outputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    from fabric_hpc.cli import output

    seen: list[str] = []
    real = output.dumps_json

    def recording(data: Any) -> tuple[str, list[str]]:
        text, undefined = real(data)
        seen.append(text)
        return text, undefined

    monkeypatch.setattr(output, "dumps_json", recording)
    yield seen
    for text in seen:
        try:
            strict_loads(text)
        except ValueError as exc:
            pytest.fail(f"--json printed invalid JSON ({exc}): {text[:500]}")
