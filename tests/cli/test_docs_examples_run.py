"""The docs' command examples run as written, copied into an empty directory (a new user's, outside a
checkout): each file an example names exists or an earlier example of the same block made it."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from fabric_hpc.cli.main import COMMAND_GROUPS, cli, main

REPO = Path(__file__).resolve().parents[2]
# lines of topology.md's Commands block that need a checkout (topology/, data/), this host or /etc
NEEDS_MORE = ("generate", "import", "discover", "assemble", "validate myhost")


def _block_lines(page: str, first: str) -> list[str]:
    """The lines of the code block of ``page`` whose line ``first`` starts, without prompts and
    comments."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(text) if line.lstrip("$ ").startswith(first))
    while not text[start - 1].startswith("```"):
        start -= 1
    lines = []
    for line in text[start:]:
        if line.startswith("```"):
            break
        lines.append(re.split(r"\s#", line.removeprefix("$ "))[0].strip())
    return lines


def _run(line: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A ``fabric`` line through the CLI in this process; any other through bash."""
    if line.startswith("fabric "):
        code = main(shlex.split(line)[1:])
        out = capsys.readouterr()
        return code, out.out + out.err
    done = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def test_topology_commands_run_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [line for line in _block_lines("topology.md", "fabric topology generate superpod")
             if not any(f"topology {word}" in line for word in NEEDS_MORE)]
    assert len(lines) >= 12 and any("report" in line and "--state state.json" in line for line in lines)
    for line in lines:
        code, out = _run(line, tmp_path, capsys)
        assert code == 0, f"{line}: exit {code}: {out}"
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert "32 allocated" in out and "1 job" in out  # the report of the state the place line wrote


def test_placement_cli_block_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    echo, place, commit = _block_lines("placement.md", "fabric place -t")
    assert _run(echo, tmp_path, capsys)[0] == 0
    place = place.split(" [")[0]  # the optional flags left out
    code, out = _run(place, tmp_path, capsys)
    assert code == 0 and "32 GPUs on 4 host(s)" in out, out
    commit = commit.replace("...", place.removeprefix("fabric place"))
    assert _run(commit, tmp_path, capsys)[0] == 0
    assert '"job-42"' in (tmp_path / "state.json").read_text(encoding="utf-8")


def test_a_missing_state_file_hint_makes_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The fix line said `write one (see docs/placement.md)`, and the CLI section there used a
    state.json it never made: a new user copying it got exit 3 with nowhere to go."""
    monkeypatch.chdir(tmp_path)
    args = ["place", "-t", "leaf-spine-16", "-s", "my state.json", "-r", "gpus=8"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "no cluster state file my state.json" in err
    fix = err.split("fix: start an all-free one: ")[1].split(" (docs/placement.md")[0]
    assert fix == """echo '{"version": 1}' > 'my state.json'"""
    assert _run(fix, tmp_path, capsys)[0] == 0
    assert main(args) == 0 and "8 GPUs on 1 host(s)" in capsys.readouterr().out
    args[4] = "new dir/state.json"  # its directory is missing too: the fix line makes it first
    assert main(args) == 3
    fix = capsys.readouterr().err.split("fix: start an all-free one: ")[1].split(" (docs/placement.md")[0]
    assert fix == """mkdir -p 'new dir' && echo '{"version": 1}' > 'new dir/state.json'"""
    assert _run(fix, tmp_path, capsys)[0] == 0
    assert main(args) == 0


@pytest.mark.parametrize("name", sorted(COMMAND_GROUPS))
def test_help_names_every_command_of_a_group(name: str) -> None:
    """The README starts a user at `fabric --help`, then uses `fabric slurm report`, `slurm jobscripts`,
    `ckpt import-hf`, `topology assemble` and `sim demo`, which that summary (and the group's own
    --help) did not name."""
    group = cli.get_command(click.Context(cli), name)
    commands = sorted(group.commands) if isinstance(group, click.Group) else []
    for text in (COMMAND_GROUPS[name][1], " ".join((group.help or "").split())):
        missing = [c for c in commands if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
        assert not missing, f"fabric {name}: {text!r} names no {missing}"
