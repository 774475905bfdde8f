"""A test failing with a lone surrogate in its message must not end an xdist run (tests/report_text.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.report_text import utf8_safe

REPO = Path(__file__).resolve().parents[1]
FAILING = ('def test_bad_name():\n    name = "bad\\udcff\\udcfename"\n'
           '    raise RuntimeError(f"sbatch -J {name} exited 1")\n\n\n'
           'def test_after():\n    assert 1 + 1 == 2\n')


def _run(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_surrogate.py").write_text(FAILING)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *plugin, "--rootdir", str(tmp_path), "-c", "/dev/null",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, errors="replace",
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_a_surrogate_in_a_failure_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    run = _run(tmp_path, "-p", "tests.report_text")
    assert run.returncode == 1 and "INTERNALERROR" not in run.stdout, run.stdout[-3000:]
    assert "1 failed, 1 passed" in run.stdout and "bad\\udcff\\udcfename" in run.stdout, run.stdout[-3000:]


def test_without_it_xdist_loses_the_failure(tmp_path: Path) -> None:  # what the plugin is for
    run = _run(tmp_path)  # pytest-xdist 3.8: INTERNALERROR, "1 passed", exit status 0: the failure is gone
    assert "strings must be utf-8 encodable" in run.stdout, run.stdout[-3000:]
    assert "failed" not in run.stdout.splitlines()[-1], run.stdout[-3000:]


def test_text_that_encodes_is_kept() -> None:
    assert utf8_safe("ok é ✓") == "ok é ✓" and utf8_safe("x\udcffy") == "x\\udcffy"
