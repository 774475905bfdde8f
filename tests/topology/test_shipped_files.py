"""The fabric files shipped in topology/ load, and the generated ones match their generators."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.topology import generators, import_lingjun, load_fabric

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "topology").glob("*.yaml"))


def test_files_are_shipped():
    assert {p.name for p in SHIPPED} >= {"dgx-h100-superpod-4su.yaml", "gb200-nvl72-8r.yaml",
                                          "alibaba-lingjun-2023.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_file_loads(path):
    fab = load_fabric(path)
    assert fab.gpus and fab.levels


@pytest.mark.parametrize("name, spec", [
    ("dgx-h100-superpod-4su.yaml", lambda: generators.superpod(4)),
    ("gb200-nvl72-8r.yaml", lambda: generators.nvl72(8)),
    ("fat-tree-k8.yaml", lambda: generators.fat_tree(8)),
    ("leaf-spine-16.yaml", lambda: generators.leaf_spine(16, hosts_per_leaf=4)),
    ("alibaba-lingjun-2023.yaml", lambda: import_lingjun(ROOT / "data/topologies/alibaba_lingjun2023_topo.csv")),
])
def test_shipped_file_is_current(name, spec):
    assert load_fabric(ROOT / "topology" / name).spec == spec(), f"regenerate topology/{name} (docs/topology.md)"
