"""Exporters: golden files for the generated Slurm/NCCL configuration (update with --update-golden)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators
from fabric_hpc.topology import export as ex

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FABRIC_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (FABRIC_UPDATE_GOLDEN=1 to accept)"


@pytest.fixture(scope="module")
def small():
    return build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8))


def test_topology_tree_golden(small):
    _golden("leaf-spine-16.topology.conf", ex.topology_conf(small))


def test_superpod_tree_exports_su_as_logical_switch():
    text = ex.topology_conf(build(generators.superpod(8)))
    assert "SwitchName=su01-leaf Nodes=su01-h[01-32]" in text
    assert "SwitchName=spine01 Switches=su01-leaf,su02-leaf,su03-leaf,su04-leaf" in text
    assert text.strip().endswith("SwitchName=core Switches=spine01,spine02")


def test_block_uses_nvlink_domains():
    text = ex.topology_conf(build(generators.nvl72(3)), "block")
    assert "BlockName=r002 Nodes=r002-h[01-18]" in text and "BlockSizes=18" in text
    _golden("nvl72-3r.topology-block.conf", text)


def test_unknown_plugin(small):
    with pytest.raises(ConfigError, match="unknown topology plugin 'dragonfly'"):
        ex.topology_conf(small, "dragonfly")


def test_nodes_and_gres_golden(small):
    _golden("leaf-spine-16.nodes.conf", ex.slurm_nodes_conf(small))
    _golden("leaf-spine-16.gres.conf", ex.gres_conf(small, device_dir="/dev"))


def test_gres_links_and_cores_follow_the_model():
    fab = build(generators.superpod(1))
    lines = [ln for ln in ex.gres_conf(fab).splitlines() if ln.startswith("NodeName=")]
    assert len(lines) == 8  # one per GPU, all hosts folded
    assert "File=/dev/nvidia5 Cores=56-111 Links=18,18,18,18,18,-1,18,18" in lines[5]
    assert ex.slurm_node_fields(fab, "su01-h01")["Gres"] == "gpu:h100:8"


def test_nccl_xml_is_well_formed():
    fab = build(generators.superpod(1))
    root = ET.fromstring(ex.nccl_topo_xml(fab, "su01-h03"))
    assert root.tag == "system"
    gpus = root.findall(".//gpu")
    nets = root.findall(".//net")
    assert len(gpus) == 8 and len(nets) == 8
    assert [c.get("numaid") for c in root.findall("cpu")] == ["0", "1"]
    assert all(g.find("nvlink").get("count") == "18" for g in gpus)
