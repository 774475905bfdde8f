"""The CLI's contract: --help on every command, --version, exit codes, no tracebacks."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from fabric_hpc import __version__
from fabric_hpc.cli.main import COMMAND_GROUPS, cli, main


def _all_commands(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join(prefix + (name,))} is listed but cannot be loaded"
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, ctx, prefix + (name,))


def _command_paths() -> list[tuple[str, ...]]:
    with click.Context(cli) as ctx:
        return [path for path, _ in _all_commands(cli, ctx)]


def test_every_registered_group_loads():
    paths = _command_paths()
    for name in COMMAND_GROUPS:
        assert (name,) in paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("path", [("sim", "run"), ("agent", "run")])
def test_help_states_the_policy_default_benefit_ratio(path):
    # the help text names the number; it went stale once when the policy's default changed
    import inspect

    from fabric_hpc.scheduler import fabric_policy

    default = inspect.signature(fabric_policy).parameters["preempt_benefit_ratio"].default
    cmd = cli
    with click.Context(cli) as ctx:
        for name in path:
            cmd = cmd.get_command(ctx, name)
    opt = next(o for o in cmd.params if o.name == "preempt_benefit_ratio")
    assert f"default: the policy's {default:.1f}" in opt.help or f"default {default:.1f}" in opt.help


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_unknown_option_is_usage_error(capsys):
    assert main(["--no-such-option"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_agent_status_exits_5_when_the_agent_is_not_running(tmp_path, capsys):
    """`fabric agent status` printed "agent: NOT running" and exited 0; a monitoring check could not
    tell. Now 5 (Slurm places new jobs itself then), also with --json (healthy: false)."""
    import json as _json
    import time

    from fabric_hpc.cli.main import main

    state = tmp_path / "agent"
    state.mkdir()
    (state / "status.json").write_text(_json.dumps({"cycles": 3, "errors": 2, "last_error": "Slurm said no",
                                                    "fallback_s": 60, "ts": time.time()}))
    assert main(["agent", "status", "--state-dir", str(state)]) == 5
    out = capsys.readouterr().out
    assert "NOT running" in out and "failed cycles 2" in out and "Slurm said no" in out
    assert main(["agent", "status", "--state-dir", str(state), "--json"]) == 5
    assert _json.loads(capsys.readouterr().out)["healthy"] is False
