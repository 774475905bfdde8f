"""Duplicate host names: one line with a compressed host list and one fix, not one per host."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators


def _spec(extra: str):
    spec = generators.leaf_spine(hosts=32, hosts_per_leaf=16, gpus=8, prefix="gpu").model_dump()
    spec["hosts"].append({"names": extra, "type": spec["hosts"][0]["type"]})
    return spec


def test_duplicate_hosts_are_one_line_with_one_fix():
    with pytest.raises(ConfigError) as e:
        build(_spec("gpu[10-12]"))
    lines = [ln for ln in e.value.message.splitlines() if "duplicate" in ln]
    assert len(lines) == 1 and "3 duplicate host names gpu[10-12] (already in hosts entry 0)" in lines[0]
    assert e.value.hint == ("list each host in one hosts entry only (remove the duplicates from all but one "
                            "entry, or rename them)")


def test_every_host_twice_stays_short():
    with pytest.raises(ConfigError) as e:
        build(_spec("gpu[1-32]"))
    assert len(e.value.message) + len(e.value.hint or "") < 400
    assert "32 duplicate host names gpu[1-32]" in e.value.message
