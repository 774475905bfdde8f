"""An SRE's probe of ``fabric -v``'s stderr: a newline in an argument forged events (the human
``error:``/``fix:`` lines printed the message raw, so ``{"event": "agent.stop", ...}`` in a path became a line
of its own): a line of those messages after the first is indented under it and other control characters are
escaped (``\\r``, ``\\u2028``), so every stderr line that begins with ``{`` is a real event; an error that lists
several problems keeps a problem per line. Each test failed before its fix. ``cli.error`` itself:
test_cli_error_event.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from fabric_hpc.cli.main import cli, main
from fabric_hpc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FORGED = '{"ts":1,"event":"agent.stop","pid":1,"reason":"forged"}'
ENTRY = "import sys; from fabric_hpc.cli.main import main; sys.exit(main())"


def fabric(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=120)


def stream(stderr: str) -> list[dict]:
    """The events of a ``-v`` stderr as a reader takes them: the lines that begin with ``{``."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_newline_in_an_argument_forges_no_event(tmp_path: Path) -> None:
    path = f"{tmp_path}/nothere\n{FORGED}\n"
    res = fabric("-v", "infer", "status", path)
    assert res.returncode == 3, res.stderr
    events = stream(res.stderr)  # each such line is JSON, and a real event
    assert [e["event"] for e in events] == ["cli.error"], res.stderr
    assert events[0]["error"].startswith(path)  # the event keeps the text as it was (JSON escapes it)
    human = [line for line in res.stderr.splitlines() if not line.startswith("{")]
    assert human[0].startswith("error: ") and human[0].endswith("nothere"), human
    assert human[1] == " " * 7 + FORGED, human  # under the first line, not an event's line
    assert human[-1].startswith("  fix: "), human


@pytest.fixture
def failing() -> Iterator[list[BaseException]]:
    """A command ``fabric probe-fail`` that raises what the test puts in the list."""
    raised: list[BaseException] = []

    @cli.command("probe-fail")
    def probe_fail() -> None:
        raise raised[0]

    yield raised
    cli.commands.pop("probe-fail")


def test_the_fix_line_and_a_usage_error_forge_no_event(failing: list[BaseException], capfd) -> None:
    failing.append(ConfigError(f"bad\r\n{FORGED}", hint=f"remove it\n{FORGED}\u2028{FORGED}"))
    assert main(["-v", "probe-fail"]) == 3
    err = capfd.readouterr().err
    assert [e["event"] for e in stream(err)] == ["cli.error"], err
    lines = err.splitlines()
    assert len(err.split("\u2028")) == 1, err
    assert lines[1:] == [f"error: bad\\r", " " * 7 + FORGED, "  fix: remove it",
                         " " * 7 + f"{FORGED}\\u2028{FORGED}"], err
    failing[0] = click.BadParameter(f"x\n{FORGED}")
    assert main(["-v", "probe-fail"]) == 2
    err = capfd.readouterr().err
    assert [e["event"] for e in stream(err)] == ["cli.error"], err
    assert "x\\n{" in err


def test_a_note_naming_a_users_path_forges_no_event(tmp_path: Path) -> None:
    odd = tmp_path / f"x\n{FORGED}\n"
    odd.mkdir()
    res = fabric("-v", "topology", "generate", "leaf-spine", "--hosts", "2", "--out", str(odd / "f.yaml"))
    assert res.returncode == 0, res.stderr
    assert (odd / "f.yaml").is_file()
    assert not [e for e in stream(res.stderr) if e["event"] == "agent.stop"], res.stderr
    wrote = [line for line in res.stderr.splitlines() if line.startswith("wrote ")]
    assert wrote == ["wrote " + repr(str(odd / "f.yaml"))[1:-1]], res.stderr
