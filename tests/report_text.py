"""A failure report whose text is not UTF-8-encodable (a lone surrogate: ``os.fsdecode`` of a job name
such as ``bad\\xff``, in an error naming the command line) is sent on with the bad characters escaped.

pytest-xdist sends each report from its worker to the controller as UTF-8 (execnet); a surrogate in it
ended the whole run with an INTERNALERROR (``DumpError: strings must be utf-8 encodable``): every later
test unrun, no summary of the failures, and (pytest-xdist 3.8) exit status 0 with that failure not
counted. Seen on the Slurm 25.05.8 tier, 2026-12-07, when ``test_sec_invalid_utf8_live`` failed after
slurmctld had died. Imported by ``tests/conftest.py``;
``-p tests.report_text`` loads it alone."""

from __future__ import annotations

from collections.abc import Generator

import pytest


def utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate written as ``\\udcff`` (unchanged when it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


Made = Generator[None, pytest.TestReport, pytest.TestReport]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Made:
    report = yield
    if report.longrepr is not None:
        text = str(report.longrepr)
        safe = utf8_safe(text)
        if safe != text:
            report.longrepr = safe
    report.sections = [(utf8_safe(title), utf8_safe(body)) for title, body in report.sections]
    return report
