"""``[install] python`` that imports another release of fabric_hpc (wheel-user probe): install checked
only that it imports, so a newer ``fabric slurm install`` wrote the TaskProlog, Prolog and unit for an
interpreter that runs an older release's code, without a word. Now a warning names both versions."""

from __future__ import annotations

import sys
from pathlib import Path

from fabric_hpc import __version__
from fabric_hpc.slurm.install_checks import check_python


def _python_of(tmp_path: Path, version: str) -> Path:
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{version}'\n")
    fake.chmod(0o755)
    return fake


def test_an_interpreter_of_another_release_is_a_warning_naming_both(tmp_path: Path) -> None:
    warnings = check_python(str(_python_of(tmp_path, "0.0.1")))
    assert len(warnings) == 1 and f"imports fabric_hpc 0.0.1, this fabric is {__version__}" in warnings[0]
    assert "pip install" in warnings[0]


def test_the_interpreter_running_install_has_no_warning() -> None:
    assert check_python(sys.executable) == []
