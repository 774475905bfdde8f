"""The wheel, built once per session and installed into a fresh venv (see wheel_env.py)."""

from __future__ import annotations

import pytest

from tests.deploy.wheel_env import WheelEnv, install


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> WheelEnv:
    return install(tmp_path_factory.mktemp("wheel"))
