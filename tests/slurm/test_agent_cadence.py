"""``interval_s`` against ``fallback_s``: a cycle must come often enough that job_submit.lua takes the agent
for alive (heartbeat younger than ``fallback_s``) and no deferral runs out between two renewals (the agent
renews one once less than ``fallback_s`` / 2 of it is left). ``interval_s`` 60 with ``fallback_s`` 10 was
"config ok"; live the heartbeat went stale and Slurm took the jobs over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.agent_config import AgentConfig
from fabric_hpc.slurm.limits import FALLBACK_PER_INTERVAL


@pytest.mark.parametrize(("interval", "fallback"), [(60, 10), (10, 10), (4, 10), (21, 60)])
def test_an_interval_too_long_for_the_fallback_is_refused(tmp_path: Path, interval: float,
                                                          fallback: int) -> None:
    with pytest.raises(ValueError, match=r"interval_s .* fallback_s") as exc:
        AgentConfig(state_dir=str(tmp_path), interval_s=interval, fallback_s=fallback)
    assert f"at most {fallback / FALLBACK_PER_INTERVAL:.3g} " in str(exc.value)


@pytest.mark.parametrize(("interval", "fallback"), [(2, 60), (20, 60), (1, 5), (0.1, 5)])
def test_intervals_within_a_third_of_the_fallback_pass(tmp_path: Path, interval: float,
                                                       fallback: int) -> None:
    cfg = AgentConfig(state_dir=str(tmp_path), interval_s=interval, fallback_s=fallback)
    assert cfg.interval_s == interval


def test_the_defaults_pass(tmp_path: Path) -> None:
    cfg = AgentConfig(state_dir=str(tmp_path))
    assert cfg.fallback_s >= FALLBACK_PER_INTERVAL * cfg.interval_s


def test_agent_check_refuses_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ntopology = "superpod:sus=1"\nstate_dir = "{tmp_path / "s"}"\n'
                   "interval_s = 60\nfallback_s = 10\n")
    res = CliRunner().invoke(cli, ["agent", "check", "--config", str(cfg), "--json"])
    assert res.exit_code == 3, res.output
    detail = json.loads(res.output)["checks"][0]["detail"]
    assert "interval_s" in detail and "fallback_s" in detail, detail


def test_agent_run_refuses_the_flags(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["agent", "run", "--topology", "superpod:sus=1", "--state-dir",
                                   str(tmp_path), "--interval", "60", "--fallback", "10"])
    assert isinstance(res.exception, ConfigError) and "interval_s 60" in str(res.exception), res.output
