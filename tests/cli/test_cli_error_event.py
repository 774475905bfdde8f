"""An SRE's probe of ``cli.error`` against docs/events.md: exit 143 after SIGTERM (130 after Ctrl-C) while the
doc said 2-5; no event for a usage error at the top level (``fabric -v nosuch``: click fails before ``-v`` is
read) while ``fabric -v ckpt nosub`` had one; and that one's hint named ``fabric ckpt nosub --help``, a
command that does not exist. Each test failed before its fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.cli.main import Terminated, main
from fabric_hpc.errors import ConfigError
from tests.cli.test_event_stream_lines import failing, fabric, stream  # noqa: F401 (failing: a fixture)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, hint", [(["nosuch"], "fabric --help"),
                                        (["--bogus", "ckpt"], "fabric --help"),
                                        (["ckpt", "nosub"], "fabric ckpt --help"),
                                        (["ckpt", "list"], "fabric ckpt list --help")])
def test_every_usage_error_is_a_cli_error_with_a_hint_that_exists(args: list[str], hint: str) -> None:
    res = fabric("-v", *args)
    assert res.returncode == 2, res.stderr
    events = stream(res.stderr)
    assert [(e["event"], e["exit_code"], e["hint"]) for e in events] == [("cli.error", 2, hint)], res.stderr
    assert fabric(*hint.split()[1:]).returncode == 0  # the command the hint names exists


def test_quiet_and_default_stderr_carry_no_event_for_a_top_level_usage_error() -> None:
    for flags in ([], ["-q"]):
        res = fabric(*flags, "nosuch")
        assert res.returncode == 2 and not stream(res.stderr), res.stderr


def test_cli_error_exit_codes_are_the_documented_ones(failing: list[BaseException], capfd) -> None:
    doc = (REPO / "docs" / "events.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `cli.error` |"))
    for exc, code in [(Terminated("terminated (SIGTERM)"), 143), (KeyboardInterrupt(), 130),
                      (ConfigError("bad"), 3)]:
        failing[:] = [exc]
        assert main(["-v", "probe-fail"]) == code
        events = stream(capfd.readouterr().err)
        assert [(e["event"], e["exit_code"]) for e in events] == [("cli.error", code)]
        assert re.search(rf"\b{code}\b|2.5", row), (code, row)
    assert re.search(r"\b143\b", row) and re.search(r"\b130\b", row), row
