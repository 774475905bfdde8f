"""discover → export slurm-nodes: RealMemory never above the host's real MiB (slurmd would report
less and Slurm would mark the node invalid: "Low RealMemory")."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.topology import Fabric, build
from fabric_hpc.topology import export as ex
from fabric_hpc.topology.discover import discover

FIX = Path(__file__).parent / "fixtures"


def test_discovered_memory_is_the_exact_mib_and_exported_as_such():
    found = discover(root=FIX / "dgx-h100", nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    real_mib = 2 * 1056645632 // 1024  # the two NUMA nodes' MemTotal (kB), in whole MiB: 2063761
    ht = next(iter(found.spec.host_types.values()))
    assert ht.memory_gb * 1024 == real_mib  # not 2015.4 GiB (2063769.6 MiB): more than the host has
    assert ex.slurm_node_fields(Fabric(found.spec), "dgx01")["RealMemory"] == str(real_mib)
    assert f"RealMemory={real_mib} " in ex.slurm_nodes_conf(Fabric(found.spec))


def test_a_partial_mib_is_not_counted(tmp_path):
    import shutil

    root = tmp_path / "host"
    shutil.copytree(FIX / "dgx-h100", root)
    for n in (0, 1):  # 63999.9995 MiB each: 124.99999 GiB in all, which 0.1 GiB rounding made 125
        (root / f"sys/devices/system/node/node{n}/meminfo").write_text(f"Node {n} MemTotal:  65535999 kB\n")
    found = discover(root=root, nvml_recording=FIX / "nvml-dgx-h100.json", hostname="h1")
    assert ex.slurm_node_fields(Fabric(found.spec), "h1")["RealMemory"] == str(2 * 65535999 // 1024)


@pytest.mark.parametrize("memory_gb,mib", [(2015.4, 2063769), (0.1, 102), (1.999, 2046), (512, 524288),
                                           (503.70703125, 515796)])
def test_export_floors_to_whole_mib(memory_gb, mib):
    from fabric_hpc.topology import generators

    spec = generators.leaf_spine(2, hosts_per_leaf=2, gpus=1, cpus=2).model_dump()
    for ht in spec["host_types"].values():
        ht["memory_gb"] = memory_gb
    fab = build(spec)
    assert ex.slurm_node_fields(fab, fab.hosts[0])["RealMemory"] == str(mib)
