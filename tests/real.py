"""Real components in tests: present, or the test fails in CI.

Tests that need Slurm, MPI or a browser call :func:`require_real`. Locally a missing component
skips the test; with ``FABRIC_REQUIRE_REAL=1`` (set by ``.ci/run``) it fails the run. Only the
two components that cannot exist on a CPU CI machine may skip even then: NVML (no GPU) and
TensorRT-LLM (no wheel for these machines). pyslurm runs in CI: its tests use the Slurm 25.11 tier.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_REAL = os.environ.get("FABRIC_REQUIRE_REAL") == "1"
MAY_SKIP_IN_CI = frozenset({"nvml", "tensorrt_llm"})


def require_real(component: str, available: bool, why: str) -> None:
    """Skip (locally) or fail (CI) when a real component is missing."""
    if available:
        return
    message = f"real component {component!r} unavailable: {why}"
    if REQUIRE_REAL and component not in MAY_SKIP_IN_CI:
        pytest.fail(message + " (FABRIC_REQUIRE_REAL=1: install it; see README.md)")
    pytest.skip(message)


def require_commands(component: str, *commands: str) -> None:
    """require_real for a set of executables on PATH."""
    missing = [c for c in commands if shutil.which(c) is None]
    require_real(component, not missing, f"not on PATH: {', '.join(missing)}")
