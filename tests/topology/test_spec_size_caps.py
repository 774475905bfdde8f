"""A short fabric file cannot expand to a huge list before it is refused.

Host entries are counted (hostlist.count) against the GPU and endpoint caps before they are expanded,
whatever their type: entries of a misspelt type used to expand 100,000 names each, uncounted (10
entries of 598 bytes: 191 MB). Groups' and NVLink domains' host lists naming more hosts than the file
has are refused without being expanded. Peak memory is measured with tracemalloc on bounded inputs.
"""

from __future__ import annotations

import tracemalloc

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.io import parse_spec
from fabric_hpc.topology.spec_check import check_spec

HT = ("{gpus: 8, gpu_model: x, gpu_memory_gb: 1, sockets: 1, cores_per_socket: 1, memory_gb: 1, "
      "nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 1, nics: 1, nic_gbps: 1}")
HEAD = f"fabric: 1\nname: t\nhost_types:\n  t: {HT}\nhosts:\n"


def _refused(text: str) -> tuple[str, float]:
    """The error of checking ``text`` and the check's peak memory (MB)."""
    spec, lines = parse_spec(text)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            check_spec(spec, locate=lines)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    return err.value.message, peak


def test_entries_of_unknown_type_count_against_the_caps_unexpanded() -> None:
    text = HEAD + "".join(f"  - {{names: 'a{c}[0-99999]', type: typo}}\n" for c in "abcdefghij")
    message, peak = _refused(text)
    assert "hosts.6.names: hosts entry 6 ('ag[0-99999]') brings the fabric to 0 GPUs and 700,000" in message
    assert "hosts.7" not in message.replace("hosts.7.type", "")  # nothing expanded past the caps
    assert "unknown host type 'typo'" in message
    assert peak < 5


def test_an_entry_is_counted_before_it_is_expanded() -> None:
    message, peak = _refused(HEAD + "  - {names: 'n[1-99999]', type: t}\n")
    assert "hosts entry 0 ('n[1-99999]') brings the fabric to 799,992 GPUs" in message
    assert peak < 2


def test_an_unknown_type_entry_still_gets_its_syntax_checked() -> None:
    message, _ = _refused(HEAD + "  - {names: 'n[1-2]', type: t}\n  - {names: 'm[3-1]', type: typo}\n")
    assert "range '3-1' runs backwards" in message and "unknown host type 'typo'" in message


def _network(lists: list[str]) -> str:
    groups = "".join(f"  - {{name: l{i}, level: leaf, switches: 1, hosts: '{h}', uplink_gbps: 1}}\n"
                     for i, h in enumerate(lists))
    tops = ", ".join(f"l{i}" for i in range(len(lists)))
    return (HEAD + "  - {names: 'n[1-2]', type: t}\nnetwork:\n  levels: [leaf, spine]\n  groups:\n" + groups
            + f"  - {{name: s, level: spine, switches: 1, children: [{tops}]}}\n")


def test_groups_listing_many_unknown_hosts_are_not_expanded() -> None:
    message, peak = _refused(_network([f"x{i}y[0-99999]" for i in range(20)] + ["n[1-2]"]))
    assert ("network.groups.0.hosts: 'x0y[0-99999]' names 100,000 hosts, among them unknown host 'x0y0' "
            "(dangling link); the file has 2 hosts") in message
    assert "network.groups.19.hosts: 'x19y[0-99999]' names 100,000 hosts" in message
    assert peak < 5


def test_groups_listing_hosts_again_and_again_are_not_expanded() -> None:
    message, _ = _refused(_network(["n[1-600]"] * 3).replace("names: 'n[1-2]'", "names: 'n[1-600]'"))
    assert "network.groups.1.hosts: 600 hosts are already under group 'l0'" in message
    assert ("network.groups.2.hosts: 'n[1-600]': the lowest-level groups' host lists name 1,800 hosts up "
            "to here, the file has 600: hosts are listed in more than one lowest-level group") in message


def test_a_small_typo_keeps_its_list_of_unknown_hosts() -> None:
    message, _ = _refused(_network(["n[1-3]"]))
    assert "1 unknown host(s) (dangling link): n3" in message
