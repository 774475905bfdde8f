"""A mistyped request key or level name gets a suggestion, as a fabric file's unknown key does
(``validation.did_you_mean``): ``-r gpu=8`` listed the valid keys without saying "did you mean 'gpus'?",
and ``within=leef`` said "unknown level" alone."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, place
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build, generators


@pytest.mark.parametrize(("text", "meant"), [("gpu=8", "gpus"), ("nodes=2,gpus=4,nuna", "numa"),
                                             ("gpus=8,tpp=2", "tp"), ("gpus=8,withn=leaf", "within")])
def test_a_mistyped_key_names_the_key_meant(text, meant):
    with pytest.raises(ConfigError) as err:
        parse_request(text)
    assert f"did you mean {meant!r}?" in err.value.message
    assert "valid keys: " in err.value.message  # the list stays


@pytest.mark.parametrize(("text", "meant"), [("gpus=8,within=leef", "leaf"), ("gpus=16,within=spin", "spine"),
                                             ("gpus=8,slices=2,slice_level=hots", "host"),
                                             ("gpus=16,max_domains=2,max_domains_level=lef", "leaf")])
def test_a_mistyped_level_names_the_level_meant(text, meant):
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2))
    with pytest.raises(ConfigError) as err:
        place(fab, ClusterState(fab), text, solver="greedy")
    assert f"unknown level {text.rsplit('=', 1)[1]!r}; did you mean {meant!r}?" in err.value.message
    assert "leaf" in err.value.hint and "spine" in err.value.hint  # the fabric's levels stay listed


def test_nothing_close_gets_no_guess():
    with pytest.raises(ConfigError) as err:
        parse_request("zzzz=1")
    assert "did you mean" not in err.value.message
