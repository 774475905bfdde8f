"""A switch group with neither hosts nor children: one message, that the group is empty and what to
do (not "lists hosts, not children" plus "host list '' is empty")."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.io import load_fabric

HEAD = """fabric: 1
name: e
host_types:
  t: {gpus: 1, gpu_model: H100, gpu_memory_gb: 80, sockets: 1, cores_per_socket: 2, memory_gb: 8,
      nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 64, nics: 1, nic_gbps: 50}
hosts:
  - {names: 'n[1-2]', type: t}
network:
  levels: [leaf, spine]
  groups:
    - {name: leaf-a, level: leaf, switches: 1, hosts: 'n[1-2]', uplink_gbps: 100}
"""


@pytest.mark.parametrize("group,level,fix", [
    ("{name: leaf-e, level: leaf, switches: 1, hosts: '', uplink_gbps: 100}", "leaf", "hosts: 'n[1-4]'"),
    ("{name: leaf-e, level: leaf, switches: 1, uplink_gbps: 100}", "leaf", "hosts: 'n[1-4]'"),
    ("{name: leaf-e, level: leaf, switches: 1, hosts: '  ', children: [], uplink_gbps: 100}", "leaf",
     "hosts: 'n[1-4]'"),
    ("{name: spine-e, level: spine, switches: 1, children: [], uplink_gbps: 100}", "spine", "children: ["),
    ("{name: spine-e, level: spine, switches: 1, hosts: '', uplink_gbps: 100}", "spine", "children: ["),
])
def test_an_empty_group_gets_one_message(tmp_path, capsys, group, level, fix):
    spine = "    - {name: spine, level: spine, switches: 1, children: [leaf-a" + (
        ", leaf-e" if level == "leaf" else "") + "]}\n"
    text = HEAD + f"    - {group}\n" + spine
    name = "leaf-e" if level == "leaf" else "spine-e"
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_fabric(path)
    problems = err.value.message.splitlines()
    assert len(problems) == 1, problems
    assert f"e.yaml:12: network.groups.1: group {name!r} is empty: a {level!r} group needs" in problems[0], problems
    assert "lists hosts, not children" not in str(err.value) and "lists child groups" not in str(err.value)
    assert fix in err.value.hint and "remove the group" in err.value.hint, err.value.hint
    assert main(["topology", "validate", str(path)]) == 3
    assert f"group {name!r} is empty" in capsys.readouterr().err


def test_the_old_messages_stay_for_the_wrong_kind_of_member(tmp_path):
    path = tmp_path / "e.yaml"
    leaf = HEAD.replace("hosts: 'n[1-2]', uplink", "children: [x], uplink")
    path.write_text(leaf + "    - {name: spine, level: spine, switches: 1, children: [leaf-a]}\n")
    with pytest.raises(ConfigError, match="a lowest-level group lists hosts, not children"):
        load_fabric(path)
    path.write_text(HEAD + "    - {name: spine, level: spine, switches: 1, hosts: 'n1'}\n")
    with pytest.raises(ConfigError, match="a 'spine' group lists child groups, not hosts"):
        load_fabric(path)
