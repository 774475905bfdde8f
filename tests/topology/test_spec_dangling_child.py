"""A misspelt child group gets the near name, and not the knock-on 'groups have no parent' error."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators


def _spec(children: list[str]):
    spec = generators.leaf_spine(hosts=32, hosts_per_leaf=16, gpus=8, prefix="gpu").model_dump()
    groups = spec["network"]["groups"]
    top = next(g for g in groups if g["children"])
    top["children"] = children
    return spec, [g["name"] for g in groups if not g["children"]]


def test_misspelt_child_suggests_the_orphan_and_nothing_else():
    spec, leaves = _spec([])
    spec, _ = _spec([leaves[0], leaves[1] + "x"])
    with pytest.raises(ConfigError) as e:
        build(spec)
    msg = e.value.message
    assert f"unknown group {leaves[1] + 'x'!r} (dangling link); did you mean {leaves[1]!r}?" in msg
    assert "have no parent" not in msg and len(msg.splitlines()) == 1
    assert e.value.hint == f"in the children of 'spine', write {leaves[1]!r} for {leaves[1] + 'x'!r}"


def test_a_missing_child_still_reports_the_orphans():
    spec, leaves = _spec([])
    spec, _ = _spec(leaves[:1])
    with pytest.raises(ConfigError) as e:
        build(spec)
    assert "groups have no parent" in e.value.message
