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


def test_shipped_files_open_by_name_where_no_such_file_is(tmp_path, monkeypatch):
    """An installed wheel has no topology/ directory: the README's fabrics open by name (with or
    without .yaml); a file of that name in the working directory still wins, and a path with a
    directory is never redirected."""
    from fabric_hpc.errors import NotFoundError
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.topology.shipped import shipped_fabrics

    assert set(shipped_fabrics()) == {p.stem for p in SHIPPED}
    monkeypatch.chdir(tmp_path)
    assert len(open_fabric("gb200-nvl72-8r").gpus) == 576
    assert len(open_fabric("gb200-nvl72-8r.yaml").gpus) == 576
    (tmp_path / "gb200-nvl72-8r.yaml").write_text((ROOT / "topology" / "leaf-spine-16.yaml").read_text())
    assert len(open_fabric("gb200-nvl72-8r.yaml").gpus) == len(load_fabric(ROOT / "topology/leaf-spine-16.yaml").gpus)
    with pytest.raises(NotFoundError) as exc:
        open_fabric("topology/fat-tree-k8.yaml")
    assert "shipped with fabric-hpc, by name: " in exc.value.hint and "fat-tree-k8" in exc.value.hint
