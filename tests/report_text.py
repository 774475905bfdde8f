"""A report whose text is not UTF-8-encodable (a lone surrogate: ``os.fsdecode`` of a job name
such as ``bad\\xff``, in an error naming the command line) is sent on with the bad characters escaped.

pytest-xdist sends each report from its worker to the controller as UTF-8 (execnet); a surrogate in it
ended the whole run with an INTERNALERROR (``DumpError: strings must be utf-8 encodable``): every later
test unrun, no summary of the failures, and (pytest-xdist 3.8) exit status 0 with that failure not
counted. Seen on the Slurm 25.05.8 tier, 2026-12-07, when ``test_sec_invalid_utf8_live`` failed after
slurmctld had died. Only the serialised copy is escaped, so a run without xdist reports as pytest
does. Not covered: a warning's message (xdist sends warnings on their own path). Imported by
``tests/conftest.py``; ``-p tests.report_text`` loads it alone."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest


def utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate written as ``\\udcff`` (unchanged when it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _escaped(obj: Any) -> Any:
    """``obj`` (a serialised report: dicts, lists, strings, numbers) with every string :func:`utf8_safe`."""
    if isinstance(obj, str):
        return utf8_safe(obj)
    if isinstance(obj, dict):
        return {_escaped(k): _escaped(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_escaped(v) for v in obj)
    return obj


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Generator[None, Any, Any]:
    """The serialised copy of a report (what xdist sends, of test and collection reports of every kind:
    failures, errors, skips, xfails) escaped; the report itself, and a run without xdist, unchanged."""
    data = yield
    return None if data is None else _escaped(data)
