"""A report with a lone surrogate in its text must not end an xdist run (tests/report_text.py). Without
the hook, pytest-xdist 3.8 ends such a run with INTERNALERROR ("strings must be utf-8 encodable"),
prints "1 passed" and exits 0: the failure (or skip, or xfail) is gone; a collection error gives "no
tests ran"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.report_text import utf8_safe

REPO = Path(__file__).resolve().parents[1]
TESTS = ('import pytest\n\nNAME = "bad\\udcff\\udcfename"\n\n\n'
         'def test_bad_name():\n    raise RuntimeError(f"sbatch -J {NAME} exited 1")\n\n\n'
         'def test_skipped():\n    pytest.skip(f"no {NAME}")\n\n\n'
         '@pytest.mark.xfail(reason=f"known {NAME}")\ndef test_xfailed():\n    assert False\n\n\n'
         'def test_after():\n    assert 1 + 1 == 2\n')
BROKEN = 'raise ImportError("cannot import bad\\udcffname")\n'


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_surrogate.py").write_text(TESTS)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-n", "2", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "-p", "tests.report_text", *args, "--rootdir", str(tmp_path),
                           "-c", "/dev/null", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          errors="replace", timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_surrogates_in_a_failure_a_skip_and_an_xfail_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    run = _run(tmp_path)
    out = run.stdout
    assert run.returncode == 1 and "INTERNALERROR" not in out, out[-3000:]
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed" in out, out[-3000:]
    assert "sbatch -J bad\\udcff\\udcfename exited 1" in out and "no bad\\udcff" in out, out[-3000:]
    assert "known bad\\udcff" in out, out[-3000:]


def test_a_collection_error_with_a_surrogate_is_counted(tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text(BROKEN)
    run = _run(tmp_path)
    assert run.returncode == 1 and "INTERNALERROR" not in run.stdout, run.stdout[-3000:]  # (was 3)
    assert "1 error" in run.stdout and "bad\\udcffname" in run.stdout, run.stdout[-3000:]


def test_text_that_encodes_is_kept() -> None:
    assert utf8_safe("ok é ✓") == "ok é ✓" and utf8_safe("x\udcffy") == "x\\udcffy"
