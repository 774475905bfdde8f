"""A host whose only up Ethernet port is 10 Mb/s used to crash discovery with a raw pydantic traceback
(0.00125 GB/s was under the old 0.01 GB/s floor and HostType(...) was built outside any ConfigError): the
floor is now 0.001 GB/s, a NIC below it is left out with a note, and a host type no fabric file allows
is a one-line ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.discover import discover


def _root(tmp_path: Path, speed: int, memtotal_kb: int | None = None) -> Path:
    root = tmp_path / "root"
    eth = root / "sys/class/net/eth0"
    (eth / "device").mkdir(parents=True)
    (root / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    for name, value in (("speed", speed), ("type", 1), ("operstate", "up")):
        (eth / name).write_text(f"{value}\n")
    if memtotal_kb is not None:
        (root / "proc").mkdir()
        (root / "proc/meminfo").write_text(f"MemTotal:       {memtotal_kb} kB\n")
    return root


def test_a_10_mbit_ethernet_host_is_discovered_from_the_cli(tmp_path):
    out = tmp_path / "h1.yaml"
    res = CliRunner().invoke(cli, ["topology", "discover", "--sysfs-root", str(_root(tmp_path, 10)),
                                   "--no-nvml", "--hostname", "h1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ht = yaml.safe_load(out.read_text())["host_types"]["h1-type"]
    assert (ht["nics"], ht["nic_gbps"]) == (1, 0.00125)


def test_a_nic_below_the_floor_is_left_out_with_a_note(tmp_path):
    found = discover(root=_root(tmp_path, 5), use_nvml=False, hostname="h1")
    ht = found.spec.host_types["h1-type"]
    assert (ht.nics, ht.nic_gbps) == (0, 0.0)
    assert any("eth0 (5 Mb/s)" in n and "below the 0.001 GB/s floor" in n for n in found.notes), found.notes


def test_a_host_type_no_fabric_file_allows_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        discover(root=_root(tmp_path, 1000, memtotal_kb=2 * 10**15), use_nvml=False, hostname="h1")
    assert "memory_gb" in err.value.message and "\n" not in err.value.message
