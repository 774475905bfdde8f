from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import Request, parse_request


def test_cli_string_nodes_times_gpus():
    r = parse_request("nodes=4,gpus=8,within=leaf")
    assert (r.nodes, r.gpus_per_node, r.gpus, r.within) == (4, 8, None, "leaf")
    assert r.units == 4


def test_cli_string_total_gpus_and_flags():
    r = parse_request("gpus=16,numa_local,switches=2,exclude=su01-h[01-03],features=h100&ib")
    assert r.gpus == 16 and r.numa_local and r.max_domains == 2 and r.max_domains_level == "leaf"
    assert r.exclude == "su01-h[01-03]" and r.features == ("h100", "ib")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        parse_request("nodes=4,gpu=8")
    assert "unknown key 'gpu'" in str(e.value) and "gpus_per_node" in str(e.value)


@pytest.mark.parametrize("text, words", [
    ("nodes=four,gpus=8", "positive whole number"),
    ("nodes=4", "gpus_per_node"),
    ("nodes=4,gpus=8,numa_local=maybe", "true/false"),
    ("gpus=10,slices=3,slice_level=leaf", "equal slices"),
    ("gpus=8,rail_aligned", "rail_aligned needs nodes"),
    ("nodes=2,gpus=8,slices=2", "go together"),
    ("within", "needs a value"),
    ("gpus=12,tp=8", "tensor-parallel groups of 8"),
    ("gpus=16,tp=8,slices=2,slice_level=host", "give tp or slices"),
    ("nodes=2,gpus=6,tp=4", "fill whole hosts"),
    ("nodes=2,whole_hosts,tp=4", "tp with nodes and whole_hosts needs gpus_per_node too"),
    ("gpus=16,tp=0", "tp: expected a positive whole number (1 to 1,024), got '0'"),
    ("gpus=16,tp=-8", "tp: expected a positive whole number (1 to 1,024), got '-8'"),
    ("gpus=16,tp=2000", "tp: expected a positive whole number (1 to 1,024), got '2000'"),
    ("gpus=16,tp=2.5", "tp: expected a positive whole number (1 to 1,024), got '2.5'"),
    ("gpus=8,slices=0,slice_level=host", "slices: expected a positive whole number, got '0'"),
    ("gpus=12,pp=5", "do not split into 5 pipeline stages"),
    ("gpus=16,tp=4,pp=3", "3 pipeline stages of whole tensor-parallel groups of 4"),
    ("nodes=2,whole_hosts,pp=2", "pp with nodes and whole_hosts needs gpus_per_node too"),
    ("gpus=16,pp=0", "pp: expected a positive whole number (1 to 1,024), got '0'"),
    ("gpus=16,pp=", "pp: needs a value"),
])
def test_bad_values_say_what_is_wrong(text, words):
    with pytest.raises(ConfigError) as e:
        parse_request(text)
    assert words in str(e.value)


def test_mapping_form_is_strict():
    assert parse_request({"gpus": 3}).gpus == 3
    with pytest.raises(ConfigError, match="unknown key"):
        parse_request({"gpus": 3, "colour": "red"})
    assert Request(nodes=2, whole_hosts=True).gpus_per_node is None


def test_tp_keeps_each_group_in_one_nvlink_domain():
    """tp=K is slices of K GPUs at the nvlink level (total mode), of K/gpn hosts (nodes mode when a
    group spans hosts), and nothing when every host holds whole groups."""
    assert parse_request("gpus=32,tp=8").tp_slices() == (4, "nvlink")
    assert parse_request("nodes=4,gpus=4,tp=8").tp_slices() == (2, "nvlink")
    assert parse_request("nodes=4,gpus=8,tp=4").tp_slices() is None
    assert parse_request("gpus=32,tp=1").tp_slices() is None


def test_tp_larger_than_any_nvlink_domain_is_never_placeable():
    from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
    from fabric_hpc.topology import build, generators

    fab = build(generators.superpod(sus=1, hosts_per_su=2))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, ClusterState(fab), "gpus=16,tp=16")
    assert "cannot ever fit" in str(e.value)
    assert "a tensor-parallel group needs 16 GPUs in one NVLink domain (a host here), and one holds at most 8" \
        in str(e.value)
    assert "use a tp of at most 8 GPUs" in e.value.hint


def test_pp_with_slices_or_tp_is_one_request():
    r = parse_request("nodes=4,gpus=8,tp=8,pp=2")
    assert (r.tp, r.pp, r.tp_slices()) == (8, 2, None)
    assert parse_request("gpus=16,pp=2,slices=2,slice_level=host").pp == 2


def test_docs_name_every_accepted_key_and_alias():
    """``gpus_per_host`` was accepted but not in docs/placement.md's request table."""
    from pathlib import Path

    from fabric_hpc.placement.request import _ALIASES

    docs = (Path(__file__).parents[2] / "docs" / "placement.md").read_text()
    table = docs.split("## Requests")[1].split("## Cluster state file")[0]
    missing = [k for k in sorted(set(Request.model_fields) | set(_ALIASES)) if f"`{k}`" not in table]
    assert not missing, missing


@pytest.mark.parametrize("text", ["gpus=８", "nodes=２,gpus=8", "gpus=16,tp=８"])
def test_numbers_are_ascii_digits_and_the_error_says_so(text):
    with pytest.raises(ConfigError, match="in ASCII digits 0-9, got"):
        parse_request(text)
