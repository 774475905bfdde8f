"""A leaf switch with no NIC attached carries no traffic: it does not add to the group's per-NIC uplink
share, and `fabric topology validate` warns about it (probe 7, item 1)."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology import open_fabric

FABRIC = """fabric: 1
name: big
host_types:
  hgx: {{gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 48,
        memory_gb: 2048, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 4, nic_gbps: 50}}
hosts:
  - {{names: 'gpu[00001-00008]', type: hgx}}
network:
  levels: [leaf, spine]
  groups:
    - {{name: la, level: leaf, switches: {n}, uplink_gbps: 100, hosts: 'gpu[00001-00004]'}}
    - {{name: lb, level: leaf, switches: {n}, uplink_gbps: 100, hosts: 'gpu[00005-00008]'}}
    - {{name: sp, level: spine, switches: 4, children: [la, lb]}}
"""


@pytest.mark.parametrize("switches", [4, 8, 16])
def test_switches_without_nics_do_not_raise_the_uplink_share(tmp_path, switches):
    path = tmp_path / "r.yaml"
    path.write_text(FABRIC.format(n=switches))
    fab = open_fabric(str(path))
    # 4 switches x 100 GB/s over 16 NICs below: 25 GB/s per NIC, however many idle switches are declared
    assert fab.distance("gpu00001/gpu0", "gpu00005/gpu0").bandwidth_gbps == pytest.approx(25.0)
    idle = fab.idle_switches()
    assert idle == ({} if switches == 4 else {"la": switches - 4, "lb": switches - 4})


def test_validate_warns_about_switches_without_nics(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(FABRIC.format(n=8))
    assert main(["topology", "validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "'la'" in err and "4 of its 8 switches" in err
    assert main(["topology", "validate", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["ok"] and len(out[0]["warnings"]) == 2


def test_no_warning_when_every_switch_has_nics(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(FABRIC.format(n=4))
    assert main(["topology", "validate", str(path), "--json"]) == 0
    assert "warnings" not in json.loads(capsys.readouterr().out)[0]
    assert "warning" not in capsys.readouterr().err
