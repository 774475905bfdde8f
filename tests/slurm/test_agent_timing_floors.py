"""The agent's timing settings have floors: 1e-9 s was accepted for interval_s, max_backoff_s,
contact_timeout_s and pin_timeout_s (a tight loop against slurmctld, one fsync'd agent.error per try
while it is down). Each is refused naming the key, the value and the floor, in the config file and on
the command line; the defaults and the documented examples stay above the floors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from fabric_hpc.slurm.agent_config import AgentConfig
from fabric_hpc.slurm.limits import FLOATS, FLOORS_WHY

FLOORS = {"interval_s": 0.1, "max_backoff_s": 1.0, "contact_timeout_s": 1.0, "pin_timeout_s": 5.0}


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_a_timing_setting_below_its_floor_is_refused_naming_key_value_and_floor(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        AgentConfig(state_dir="/var/lib/fabric-agent", **{key: 1e-9})
    text = str(info.value)
    assert f"{key} 1e-09 is below its floor of {FLOORS[key]:g} s" in text and FLOORS_WHY[key] in text
    floor = AgentConfig(state_dir="/var/lib/fabric-agent", **{key: FLOORS[key]})
    assert getattr(floor, key) == FLOORS[key]  # the floor itself is allowed
    assert FLOATS[key][0] == FLOORS[key]
    assert getattr(AgentConfig(state_dir="/var/lib/fabric-agent"), key) >= FLOORS[key]  # the default


def test_the_command_line_refuses_a_tiny_interval() -> None:
    out = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--state-dir",
                          "/nonexistent", "--topology", "leaf-spine:hosts=2,hosts_per_leaf=2",
                          "--interval", "1e-9"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "--interval" in out.stderr and "1e-9" in out.stderr, out.stderr
    assert "≥ 0.1" in out.stderr and "Traceback" not in out.stderr
