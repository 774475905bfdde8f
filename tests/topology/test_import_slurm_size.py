"""topology.conf / topology.yaml import counts each switch's list before expanding it: the file is
refused at the line past MAX_NAMES hosts (or child switches) in all, before that line's list is made
(30 lines of ``Nodes=aaa[0-99999]``, 1 KB, used to reach 300 MB before the total was checked)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.import_slurm import import_topology_conf

CONF = "SwitchName=s0 Nodes=a[1-4]\nSwitchName=s1 Nodes=b[0-99999]\nSwitchName=s2 Nodes=c[0-99999]\n"
YAML = ("- topology: t\n  cluster_default: true\n  tree:\n    switches:\n"
        "    - {switch: s0, nodes: 'a[1-4]'}\n    - {switch: s1, nodes: 'b[0-99999]'}\n"
        "    - {switch: s2, nodes: 'c[0-99999]'}\n")
CHILDREN = "SwitchName=s0 Switches=t[0-99999]\nSwitchName=s1 Switches=u[1-2]\n"


def _refused(path: Path) -> tuple[str, float]:
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            import_topology_conf(path)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    return err.value.message, peak


@pytest.mark.parametrize("text,line", [(CONF, 2), (YAML, 6)])
def test_hosts_past_the_limit_are_refused_at_their_line_unexpanded(tmp_path: Path, text: str,
                                                                   line: int) -> None:
    path = tmp_path / "topology.conf"
    path.write_text(text)
    message, peak = _refused(path)
    assert message.startswith(f"{path}:{line}: switch 's1': the switches up to this line list 100,004 hosts")
    assert "a fabric models at most 100,000" in message
    assert peak < 4


def test_child_switches_past_the_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "topology.conf"
    path.write_text(CHILDREN)
    message, _ = _refused(path)
    assert message.startswith(f"{path}:2: switch 's1': the switches up to this line list 100,002 child "
                              "switches (Switches=)")
