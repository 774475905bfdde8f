"""Probe 7, item 6: a host list under two leaf groups is one line; `levels: [leaf, leaf]` is one error;
an import's too-large node number names its CSV line; the block-export note says multi-host NVLink."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.export import outside_blocks_note
from fabric_hpc.topology.importers import import_csv
from fabric_hpc.topology.io import parse_spec
from fabric_hpc.topology.spec_check import check_spec
from tests.topology.test_export_outside_blocks import mixed

HT = ("host_types:\n  g: {gpus: 8, gpu_model: H100, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 8, "
      "memory_gb: 512, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}\n")


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        spec, lines = parse_spec(text, source="f.yaml")
        check_spec(spec, source="f.yaml", locate=lines)
    return info.value.message.splitlines()


def test_hosts_under_two_leaf_groups_are_one_line():
    lines = _problems(f"fabric: 1\nname: t\n{HT}hosts:\n- {{names: 'gpu[01-30]', type: g}}\nnetwork:\n"
                      "  levels: [leaf, spine]\n  groups:\n"
                      "  - {name: l1, level: leaf, switches: 1, hosts: 'gpu[01-30]', uplink_gbps: 400}\n"
                      "  - {name: l2, level: leaf, switches: 1, hosts: 'gpu[01-30]', uplink_gbps: 400}\n"
                      "  - {name: s, level: spine, switches: 1, children: [l1, l2]}\n")
    assert lines == ["f.yaml:11: network.groups.1.hosts: 30 hosts are already under group 'l1': gpu[01-30]"]


def test_repeated_level_name_is_one_error():
    lines = _problems(f"fabric: 1\nname: t\n{HT}hosts:\n- {{names: 'gpu[01-02]', type: g}}\nnetwork:\n"
                      "  levels: [leaf, leaf]\n  groups:\n"
                      "  - {name: l1, level: leaf, switches: 1, hosts: 'gpu[01-02]'}\n")
    assert lines == ["f.yaml:8: network.levels: level names must be unique"]


def test_spot_node_number_past_slurm_range_names_the_line(tmp_path):
    csv = tmp_path / "spot.csv"
    csv.write_text("gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,1,8,1\nA10,1,8,100000000000000000000\n")
    with pytest.raises(ConfigError) as info:
        import_csv(csv)
    assert info.value.message.startswith(f"{csv}:3: host name 'spot100000000000000000000'")


def test_block_note_says_multi_host_nvlink_domain():
    note = outside_blocks_note(mixed())
    assert "dgx[1-2] in no multi-host NVLink domain" in note
