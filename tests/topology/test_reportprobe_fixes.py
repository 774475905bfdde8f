"""An admin's first session with the topology side (reportprobe): the block export's header names the
Slurm that reads it, a file that is no fabric file is one line (not its contents line by line), and a
NIC speed written in Gb/s instead of GB/s is a validate warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators, load_fabric
from fabric_hpc.topology import export as ex


def test_block_header_names_the_slurm_of_its_size_line():
    fab = build(generators.nvl72(2))
    sizes = ex.topology_conf(fab, "block").splitlines()
    assert sizes[0].startswith("# topology/block (Slurm >= 24.05)") and sizes[-1] == "BlockSizes=18,36"
    levels = ex.topology_conf(fab, "block", slurm_version=(23, 11)).splitlines()
    assert levels[0].startswith("# topology/block (Slurm 23.11)") and levels[-1] == "BlockLevels=0-1"


SHADOW_LIKE = "".join(f"user{i}:$6$salt{i}$hashhashhash{i}:20228:0:99999:7:::\n" for i in range(30))


def test_a_file_that_is_no_fabric_file_is_one_line_without_its_contents(tmp_path: Path, capsys):
    path = tmp_path / "shadow.yaml"
    path.write_text(SHADOW_LIKE)
    with pytest.raises(ConfigError) as info:
        load_fabric(path)
    message = str(info.value.message)
    assert "\n" not in message and "hash" not in message and "user1" not in message
    assert "is not a fabric file" in message and "30 top-level keys" in message
    assert main(["topology", "validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "hash" not in err and "is not a fabric file" in err


def test_one_foreign_key_is_counted_in_the_singular(tmp_path: Path):
    path = tmp_path / "other.yaml"
    path.write_text("engine: vllm\n")
    with pytest.raises(ConfigError, match="none of its 1 top-level key is a fabric key"):
        load_fabric(path)


def test_misspelt_top_level_keys_still_get_did_you_mean(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("fabrc: 1\nnme: x\n")
    with pytest.raises(ConfigError, match="did you mean 'fabric'"):
        load_fabric(path)


RAIL = """fabric: 1
name: rail
host_types:
  hgx: {{gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 48,
        memory_gb: 2048, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 4, nic_gbps: {nic}}}
hosts:
  - {{names: 'gpu[01-04]', type: hgx}}
network:
  levels: [leaf]
  groups:
    - {{name: rail, level: leaf, switches: 4, hosts: 'gpu[01-04]'}}
"""


@pytest.mark.parametrize("nic, warned", [(50, False), (200, False), (400, True), (800, True)])
def test_validate_warns_of_a_nic_speed_in_bits(tmp_path: Path, capsys, nic: int, warned: bool):
    path = tmp_path / "rail.yaml"
    path.write_text(RAIL.format(nic=nic))
    assert main(["topology", "validate", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    warnings = [w for w in result.get("warnings", []) if "nic_gbps" in w]
    assert bool(warnings) == warned
    if warned:
        assert f"nic_gbps: {nic // 8}" in warnings[0] and "'hgx'" in warnings[0]


def test_fabric_keys_in_capitals_are_not_taken_for_a_foreign_file(tmp_path: Path):
    path = tmp_path / "caps.yaml"
    path.write_text("FABRIC: x\nHOSTS: []\n")
    with pytest.raises(ConfigError) as info:
        load_fabric(path)
    assert "not a fabric file" not in info.value.message
