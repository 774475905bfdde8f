"""The gres.conf ``fabric slurm install`` writes over a site's own (``AutoDetect=nvml``, its GPU line,
an nvme GRES with a device ``File=``), read by a live slurmd: fabric's GPU lines (node-local
``AutoDetect=off``) and the site's nvme line both count, and a job holding both runs."""

from __future__ import annotations

from typing import Any

import pytest

from fabric_hpc.slurm.install_plan import _gres_conf
from fabric_hpc.slurm.site_gres import parse_site_gres

pytestmark = [pytest.mark.slurm]

SITE = ("AutoDetect=nvml\n"
        "Name=gpu File={device_dir}/nvidia[0-3]\n"
        "# scratch\n"
        "NodeName=n[1-2] Name=nvme File={device_dir}/nvme0\n")


def test_slurmd_reads_fabrics_gpus_and_the_sites_nvme(slurm_cluster_factory: Any) -> None:
    from fabric_hpc.testing import NodeSpec
    from fabric_hpc.topology import build, export, generators

    fab = build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=4, cpus=8))
    site = parse_site_gres(SITE, "gres.conf", fab.hosts)
    gres = _gres_conf(fab, "{device_dir}", site)
    assert "AutoDetect=nvml" in gres and "NodeName=n[1-2] Name=nvme" in gres, gres
    nodes = []
    for h in fab.hosts:
        fields = {**export.slurm_node_fields(fab, h), "RealMemory": "16000"}
        if h in ("n1", "n2"):
            fields["Gres"] += ",nvme:1"
        nodes.append(NodeSpec.from_fields(h, fields))
    c = slurm_cluster_factory(nodes=nodes, gres_conf=gres, topology_conf=export.topology_conf(fab),
                              settings={"GresTypes": "gpu,nvme", "TopologyPlugin": "topology/tree"})
    shown = c.run(["scontrol", "-o", "show", "node", "n1"]).stdout
    assert "nvme:1" in shown and "gpu:" in shown and "State=IDLE" in shown, shown
    drained = c.run(["sinfo", "-h", "-R"]).stdout.strip()
    assert drained == "", drained
    jid = c.sbatch("-N1", "--gres=gpu:4,nvme:1", "--mem=1000", wrap="true")
    info = c.wait_job(jid, states=("COMPLETED",), timeout=60)
    assert info["NodeList"] in ("n1", "n2"), info
