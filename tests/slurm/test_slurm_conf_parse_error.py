"""A slurm.conf Slurm cannot parse (probed by an admin: a file of garbage bytes as agent.slurm_conf): every
command failed with `Parse error in file …` / `Unable to process configuration file`, and the fix line said
"is slurmctld up? (scontrol ping)" (`fabric agent run`, the check's slurm row) or nothing (the slurm.conf,
privilege and usage rows): slurmctld was up, the file was wrong. The fix now names the file to repair.
Real Slurm commands (Debian's, on PATH) read a real file; no Slurm daemon is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.contract import SlurmError
from tests.real import require_real

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bad_conf(tmp_path: Path) -> Path:
    require_real("slurm", shutil.which("scontrol") is not None, "Slurm's client commands are not installed")
    conf = tmp_path / "slurm.conf"
    conf.write_bytes(b"\xff\xfe garbage\n")
    return conf


def test_the_client_names_the_file_to_fix(bad_conf: Path) -> None:
    client = CliClient({"SLURM_CONF": str(bad_conf), "PATH": os.environ["PATH"]}, timeout=20)
    with pytest.raises(SlurmError) as info:
        client.run(["scontrol", "show", "config"])
    assert "Parse error in file" in info.value.message, info.value.message
    hint = info.value.hint
    assert hint is not None and f"Slurm cannot parse {bad_conf}" in hint, hint
    assert "scontrol ping" not in info.value.hint


def test_agent_run_says_to_fix_the_file_not_to_ping_slurmctld(bad_conf: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology",
                           "leaf-spine:hosts=4,hosts_per_leaf=2,gpus=8",
                           "--state-dir", str(tmp_path / "state"),
                           "--slurm-conf", str(bad_conf), "--cycles", "1", "--contact-timeout", "20"],
                          env=env, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 5, proc.stderr
    assert f"fix: Slurm cannot parse {bad_conf}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "scontrol ping" not in proc.stderr, proc.stderr


def test_a_key_this_slurm_does_not_know_and_a_path_with_a_space(tmp_path: Path) -> None:
    """Review: a key the commands do not know (commands older than the conf) got "fix that line", and
    a path with a space was cut at it."""
    require_real("slurm", shutil.which("scontrol") is not None, "Slurm's client commands are not installed")
    where = tmp_path / "my conf"
    where.mkdir()
    (where / "new.conf").write_text("ClusterName=x\nSlurmctldHost=h\nSomeNewKey25=1\n")
    (where / "bad.conf").write_bytes(b"\xff\xfe garbage\n")
    hints = {}
    for name in ("new.conf", "bad.conf"):
        client = CliClient({"SLURM_CONF": str(where / name), "PATH": os.environ["PATH"]}, timeout=20)
        with pytest.raises(SlurmError) as info:
            client.run(["scontrol", "show", "config"])
        hints[name] = info.value.hint or ""
    assert "Slurm does not know the key SomeNewKey25" in hints["new.conf"], hints
    assert "a misspelt key (fix it), or commands older than the slurmctld" in hints["new.conf"], hints
    assert f"Slurm cannot parse {where / 'bad.conf'} (line 1)" in hints["bad.conf"], hints


def test_a_slurm_conf_this_user_cannot_read_is_named_with_why() -> None:
    """As Slurm 25.11.7's scontrol says it for a file the user may not read (a root test cannot make one)."""
    from fabric_hpc.slurm.cli_backend import _failure_hint

    hint = _failure_hint('scontrol: error: s_p_parse_file: unable to read "/etc/slurm/slurm.conf": '
                         "Permission denied\nscontrol: fatal: Unable to process configuration file")
    assert hint is not None and hint.startswith("Slurm cannot read /etc/slurm/slurm.conf (Permission denied)")


def test_the_other_unreadable_form_and_a_huge_error_output_are_answered_quickly() -> None:
    """Review: Slurm's stat failure (parse_config.c: "cannot stat file …, retrying") got "fix that line", and
    the parse-error pattern took seconds on a long line of repeats (now read from the output's end only)."""
    from fabric_hpc.slurm.cli_backend import _failure_hint

    hint = _failure_hint("scontrol: error: s_p_parse_file: cannot stat file /etc/slurm/slurm.conf: "
                         "Permission denied, retrying in 1sec up to 60sec\n"
                         "scontrol: fatal: Unable to process configuration")
    assert hint is not None and hint.startswith("Slurm cannot read /etc/slurm/slurm.conf (Permission denied)")
    hint = _failure_hint("Parse error in file " * 50_000 + "\nParse error in file /x line 3: y")
    assert hint is not None and "Slurm cannot parse /x (line 3)" in hint
