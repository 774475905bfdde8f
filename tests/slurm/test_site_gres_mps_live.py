"""Why ``fabric slurm install`` refuses a site's ``Name=mps File=`` that names no GPU file of fabric's
lines (tests/slurm/test_site_gres_includes.py): a live slurmd discards such a record ("Discarding
gres/'shared' configuration (File=...) without matching gres/'sharing' record", gres_c_s.c), so the
node reports fewer MPS than slurm.conf gives it, and slurmctld marks it INVALID ("gres/mps count
reported lower than configured (0 < 400)"); with the GPU files it counts them all. Tested on 22.05
and 25.11.7."""

from __future__ import annotations

from typing import Any

import pytest

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.slurm.install_plan import _gres_conf
from fabric_hpc.slurm.site_gres import gpu_files, parse_site_gres

pytestmark = [pytest.mark.slurm]


def _mps_cluster(factory: Any, mps_files: str) -> Any:
    from fabric_hpc.testing import NodeSpec
    from fabric_hpc.topology import build, export, generators

    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=4, cpus=8))
    site = parse_site_gres(f"Name=mps Count=400 File={mps_files}\n", "gres.conf", fab.hosts)
    gres = _gres_conf(fab, "{device_dir}", site)
    nodes = []
    for h in fab.hosts:
        fields = {**export.slurm_node_fields(fab, h), "RealMemory": "16000"}
        fields["Gres"] += ",mps:400"
        nodes.append(NodeSpec.from_fields(h, fields))
    return factory(nodes=nodes, gres_conf=gres, topology_conf=export.topology_conf(fab),
                   settings={"GresTypes": "gpu,mps", "TopologyPlugin": "topology/tree"}), fab


def test_slurmd_discards_mps_files_of_no_gpu(slurm_cluster_factory: Any) -> None:
    from fabric_hpc.topology import build, generators

    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=4, cpus=8))
    # install refuses this site line before writing anything
    with pytest.raises(ConfigError, match="not a GPU file"):
        parse_site_gres("Name=mps Count=400 File=/dev/nvidia[4-7]\n", "gres.conf", fab.hosts,
                        gpu_files=gpu_files(fab, "/dev"))
    # what slurmctld makes of it: both nodes INVALID (tested on 25.11.7)
    with pytest.raises(ExternalError, match=r"gres/mps count reported lower than configured \(0 < 400\)"):
        _mps_cluster(slurm_cluster_factory, "{device_dir}/nvidia[4-7]")


def test_slurmd_counts_mps_on_the_gpu_files(slurm_cluster_factory: Any) -> None:
    c, _ = _mps_cluster(slurm_cluster_factory, "{device_dir}/nvidia[0-3]")
    log = "\n".join(p.read_text(errors="replace") for p in c.log_dir.glob("slurmd*.log"))
    assert "Discarding gres/'shared'" not in log
    shown = c.run(["scontrol", "-o", "show", "node", "n1"]).stdout
    # the shared GRES takes the GPU lines' Type (gres_c_s.c copies it): mps:h100:400
    assert "mps:h100:400" in shown and "State=IDLE" in shown, shown
