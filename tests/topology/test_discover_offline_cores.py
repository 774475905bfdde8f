"""Discovery on a host with a core offline (``echo 0 > /sys/devices/system/cpu/cpuN/online`` on a
faulty core, or ``maxcpus=``): 111 cores over 2 sockets. Before, cores per socket were rounded up
(56), so the exported node line declared 224 CPUs where slurmd counts 222 online, and slurmctld
marks such a node invalid ("Low socket*core*thread count", "Low CPUs": node_mgr.c
validate_node_specs). Rounded down, the node line never declares more than slurmd finds."""

from __future__ import annotations

import shutil
from pathlib import Path

from fabric_hpc.topology import export
from fabric_hpc.topology.discover import discover

FIXTURES = Path(__file__).parent / "fixtures"


def test_an_offline_core_rounds_cores_per_socket_down(tmp_path):
    root = tmp_path / "sysfs"
    shutil.copytree(FIXTURES / "dgx-h100", root)
    # cpu56 and cpu168 are the two threads of socket 1's core 0
    (root / "sys/devices/system/cpu/online").write_text("0-55,57-167,169-223\n")
    d = discover(root=root, use_nvml=False, hostname="dgx01")
    ht = d.spec.host_types["dgx01-type"]
    assert (ht.sockets, ht.cores_per_socket, ht.threads_per_core) == (2, 55, 2)
    assert ht.sockets * ht.cores_per_socket * ht.threads_per_core <= 222
    assert any("rounded down to 55 per socket" in n for n in d.notes), d.notes
    from fabric_hpc.topology import build
    assert " CPUs=220 " in export.slurm_nodes_conf(build(d.spec))
