"""Fabric file mistakes get one line each and their own fix: a host list with other zero padding, a
backwards range (no follow-on lines), YAML 1.1's '2e3' text, an empty file, a misspelt key, a
duplicate host, a gpu_numa of the wrong length, NICs of 0 GB/s."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.io import parse_spec
from fabric_hpc.topology.spec_check import check_spec

HT = ("host_types:\n  g: {gpus: 8, gpu_model: H100, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 8, "
      "memory_gb: 512, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}\n")


def _fabric(hosts: str, leaf1: str, leaf2: str, ht: str = HT) -> str:
    return (f"fabric: 1\nname: t\n{ht}hosts:\n- {{names: '{hosts}', type: g}}\nnetwork:\n"
            "  levels: [leaf, spine]\n  groups:\n"
            f"  - {{name: l1, level: leaf, switches: 1, hosts: '{leaf1}', uplink_gbps: 400}}\n"
            f"  - {{name: l2, level: leaf, switches: 1, hosts: '{leaf2}', uplink_gbps: 400}}\n"
            "  - {name: s, level: spine, switches: 1, children: [l1, l2]}\n")


def _problems(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        spec, lines = parse_spec(text, source="f.yaml")
        check_spec(spec, source="f.yaml", locate=lines)
    return info.value


def test_a_list_with_other_zero_padding_is_one_line_per_list():
    err = _problems(_fabric("gpu[01-12]", "gpu[001-006]", "gpu[007-012]"))
    lines = err.message.splitlines()
    assert len(lines) == 2, lines
    assert "network.groups.0.hosts: 6 unknown host(s) (dangling link): gpu[001-006]; the hosts are named " \
           "gpu[01-06]: the lists differ in zero padding ('gpu001' vs 'gpu01')" in lines[0]
    assert "under no 'leaf' group" not in err.message
    assert "same zero padding" in err.hint


def test_a_backwards_range_gives_its_line_and_no_follow_on_lines():
    err = _problems(_fabric("gpu[001-012]", "gpu[006-001]", "gpu[007-012]"))
    assert err.message.splitlines() == ["f.yaml:10: network.groups.0.hosts: host list 'gpu[006-001]': range "
                                        "'006-001' runs backwards"], err.message


def test_hosts_left_out_of_every_leaf_are_one_line():
    err = _problems(_fabric("gpu[001-012]", "gpu[001-004]", "gpu[007-012]"))
    assert err.message.splitlines() == ["f.yaml:5: hosts: 2 host(s) are under no 'leaf' group (not "
                                        "connected): gpu[005-006]"], err.message
    assert err.hint == "add them to the hosts of a 'leaf' group"


@pytest.mark.parametrize("written,fix", [("2e3", "2000 or 2.0e+3"), ("1e9", "1000000000 or 1.0e+9"),
                                         ("1.0e308", "1.0e+308")])
def test_yaml_1_1_exponent_text_says_how_to_write_the_number(written, fix):
    ht = HT.replace("memory_gb: 512", f"memory_gb: {written}")
    err = _problems(_fabric("gpu[001-012]", "gpu[001-006]", "gpu[007-012]", ht))
    said = f"(got '{written}'): YAML read '{written}' as text, not a number (write it as {fix})"
    assert said in err.message


def test_an_empty_file_says_so():
    for text in ("", "\n# only a comment\n"):
        err = _problems(text)
        assert err.message == "f.yaml: the file is empty (no YAML document in it)"


def test_a_misspelt_key_gets_the_near_one():
    err = _problems(_fabric("gpu[001-012]", "gpu[001-006]", "gpu[007-012]",
                            HT.replace("cores_per_socket", "cores_per_sockt")))
    assert "unknown key 'cores_per_sockt' at host_types.g.cores_per_sockt; did you mean 'cores_per_socket'?" \
        in err.message


def test_specific_fixes_replace_the_generic_one():
    text = _fabric("gpu[001-012]", "gpu[001-006]", "gpu[007-012]").replace(
        "- {names: 'gpu[001-012]', type: g}",
        "- {names: 'gpu[001-012]', type: g}\n- {names: gpu003, type: g}")
    err = _problems(text)
    assert "duplicate host name 'gpu003'" in err.message
    assert err.hint == ("list 'gpu003' in one hosts entry only (remove it from the others, or rename "
                        "one of them)")
    err = _problems(_fabric("gpu[001-012]", "gpu[001-006]", "gpu[007-012]",
                            HT.replace("nics: 8", "nics: 8, gpu_numa: [0, 1]")))
    assert "gpu_numa: has 2 entries for 8 GPUs" in err.message
    assert err.hint.startswith("give gpu_numa one socket number per GPU (8 entries, "
                               "e.g. [0, 0, 0, 0, 1, 1, 1, 1])")
    ht = HT.replace("nic_gbps: 50", "nic_gbps: 0")
    err = _problems(_fabric("gpu[001-012]", "gpu[001-006]", "gpu[007-012]", ht))
    assert "NICs declared but nic_gbps is 0" in err.message and "400 Gb/s NDR is 50" in err.hint
    assert "docs/topology.md" not in err.hint
