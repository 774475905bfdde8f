"""Exporters: golden files for the generated Slurm/NCCL configuration (update with --update-golden)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, generators
from fabric_hpc.topology import export as ex
from fabric_hpc.topology import export_yaml as exy
from fabric_hpc.topology.nccl_xml import nccl_topo_xml

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
    root = ET.fromstring(nccl_topo_xml(fab, "su01-h03"))
    assert root.tag == "system"
    gpus = root.findall(".//gpu")
    nets = root.findall(".//net")
    assert len(gpus) == 8 and len(nets) == 8
    assert [c.get("numaid") for c in root.findall("cpu")] == ["0", "1"]
    assert all(g.find("nvlink").get("count") == "18" for g in gpus)


# -- NCCL XML: what NCCL's topology parser (src/graph/topo.cc) reads ------------------------------
BUSID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:00\.0$")


def _one_host(**update) -> object:
    """A one-host fabric of a DGX H100 host type with ``update`` applied."""
    ht = generators.DGX_H100.model_copy(update={"gpu_numa": None, **update})
    return build({"fabric": 1, "name": "one", "host_types": {"t": ht.model_dump()},
                  "hosts": [{"names": "a1", "type": "t"}]})


def _nccl_tree(fab, host="a1") -> ET.Element:
    root = ET.fromstring(nccl_topo_xml(fab, host))
    for pci in root.iter("pci"):  # NCCL: a pci holds one gpu, or one nic, or child pci devices
        kids = [c.tag for c in pci]
        assert kids in (["gpu"], ["nic"]) or (kids and set(kids) == {"pci"}), kids
        want = {"gpu": "0x03", "nic": "0x02"}.get(kids[0], "0x060400")
        assert pci.get("class").startswith(want)
    return root


def _switch_of(root: ET.Element) -> dict[str, ET.Element]:
    """``gpu<dev>`` / ``mlx5_<n>`` → the PCIe switch (the ``pci`` under a ``cpu``) holding it."""
    out: dict[str, ET.Element] = {}
    for cpu in root.findall("cpu"):
        for switch in cpu.findall("pci"):
            for gpu in switch.iter("gpu"):
                assert f"gpu{gpu.get('dev')}" not in out
                out[f"gpu{gpu.get('dev')}"] = switch
            for net in switch.iter("net"):
                assert net.get("name") not in out, f"{net.get('name')} appears twice"
                out[net.get("name")] = switch
    return out


@pytest.mark.parametrize(("gpus", "nics"), [(8, 8), (16, 8), (16, 1), (64, 64), (1024, 64), (1024, 0), (0, 64)])
def test_nccl_bus_ids_are_valid_and_unique(gpus, nics):
    fab = _one_host(gpus=gpus, nics=nics, nvswitches=4 if gpus > 1 else 0, nvlink_gbps=900 if gpus > 1 else 0)
    root = _nccl_tree(fab)
    ids = [p.get("busid") for p in root.iter("pci")]
    assert all(BUSID.match(b) for b in ids), [b for b in ids if not BUSID.match(b)][:3]
    assert len(ids) == len(set(ids))
    assert len(root.findall(".//gpu")) == gpus and len(root.findall(".//net")) == nics


def test_nccl_nics_shared_by_gpus_appear_once_under_their_switch():
    root = _nccl_tree(_one_host(nics=4))  # GPUs 2k and 2k+1 share mlx5_k
    switch = _switch_of(root)
    assert sorted(n.get("name") for n in root.iter("net")) == [f"mlx5_{n}" for n in range(4)]
    for i in range(8):
        assert switch[f"gpu{i}"] is switch[f"mlx5_{i // 2}"]
    assert len({id(s) for s in switch.values()}) == 4


def test_nccl_nics_beyond_the_gpus_are_kept():
    root = _nccl_tree(_one_host(gpus=2, nics=4, gpu_numa=[0, 1]))  # GPU 0 → NIC 0, GPU 1 → NIC 2
    switch = _switch_of(root)
    assert sorted(switch) == ["gpu0", "gpu1", "mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]
    assert switch["mlx5_1"] is switch["gpu0"] and switch["mlx5_3"] is switch["gpu1"]
    cpu1 = root.findall("cpu")[1]
    assert {n.get("name") for n in cpu1.iter("net")} == {"mlx5_2", "mlx5_3"}


# -- topology/block follows Slurm's BlockSizes rules; topology.yaml; --segment ---------------------
def _block_sizes_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("BlockSizes="))


@pytest.mark.parametrize(("hosts", "per_leaf", "expected"), [
    (16, 4, "BlockSizes=4,8,16"),  # 4 blocks: base, 2 blocks, 4 blocks
    (12, 4, "BlockSizes=4,8"),  # 3 blocks: no level of 4 blocks
    (4, 4, "BlockSizes=4"),
])
def test_block_sizes_are_base_times_powers_of_two(hosts, per_leaf, expected):
    text = ex.topology_conf(build(generators.leaf_spine(hosts, hosts_per_leaf=per_leaf)), "block")
    assert _block_sizes_line(text) == expected


def test_unequal_blocks_are_refused_with_a_fix():
    fab = build(generators.leaf_spine(11, hosts_per_leaf=4))  # blocks of 4, 4 and 3 hosts
    with pytest.raises(ConfigError, match=r"unequal sizes \(1 × 3, 2 × 4 hosts\)") as info:
        ex.topology_conf(fab, "block")
    assert "--block-size N with N <= 3" in info.value.hint
    assert _block_sizes_line(ex.topology_conf(fab, "block", block_size=3)) == "BlockSizes=3,6"
    assert _block_sizes_line(ex.topology_conf(fab, "block", block_size=2)) == "BlockSizes=2,4"
    with pytest.raises(ConfigError, match="larger than the smallest block"):
        ex.topology_conf(fab, "block", block_size=4)


def test_topology_yaml_with_the_tree_default_leaves_unequal_blocks_out_and_says_so(capsys):
    """`export --format topology-yaml` (default tree) was refused for leaves of unequal sizes: the
    tree an admin asked for is written, the block topology left out with a comment naming the fix."""
    import yaml

    from fabric_hpc.cli.main import main

    fab = build(generators.leaf_spine(11, hosts_per_leaf=4))  # blocks of 4, 4 and 3 hosts
    text = exy.topology_yaml(fab)
    assert ("# block: left out: blocks of unequal sizes (1 × 3, 2 × 4 hosts) need a base block size; "
            "export with --block-size N (N <= 3) to write it\n") in text
    entries = yaml.safe_load(text)
    assert [(e["topology"], e["cluster_default"]) for e in entries] == [("tree", True), ("flat", False)]
    assert entries[0]["tree"]["switches"][2] == {"switch": "leaf3", "nodes": "n[9-11]"}
    for default in ("tree", "flat"):
        assert main(["topology", "export", "leaf-spine:hosts=11", "--format", "topology-yaml",
                     "--default-topology", default]) == 0
        assert "# block: left out" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"unequal sizes \(1 × 3, 2 × 4 hosts\)"):  # the block default needs it
        exy.topology_yaml(fab, default="block")
    # a base given: the block topology is written
    block = yaml.safe_load(exy.topology_yaml(fab, block_size=3))[1]
    assert block["topology"] == "block" and block["block"]["block_sizes"] == [3, 6]
    with pytest.raises(ConfigError, match="larger than the smallest block"):
        exy.topology_yaml(fab, block_size=4)


def test_block_sizes_rule_matches_slurm():
    """Every exported value is base × 2^k (what slurmctld checks), whatever the block count."""
    for count in range(1, 40):
        sizes = ex.block_sizes([5] * count)
        assert sizes[0] == 5 and all(s % 5 == 0 and (s // 5) & (s // 5 - 1) == 0 for s in sizes)
        assert sizes[-1] // 5 <= count < 2 * sizes[-1] // 5


def test_topology_yaml_has_tree_block_and_flat():
    import yaml

    fab = build(generators.leaf_spine(16, hosts_per_leaf=4))
    text = exy.topology_yaml(fab, default="block")
    entries = yaml.safe_load(text)
    assert [e["topology"] for e in entries] == ["tree", "block", "flat"]
    assert [list(e)[0] for e in entries] == ["topology"] * 3  # Slurm: "topology" must come first
    assert [e["cluster_default"] for e in entries] == [False, True, False]
    tree, block, flat = entries
    assert tree["tree"]["switches"][0] == {"switch": "leaf1", "nodes": "n[1-4]"}
    assert tree["tree"]["switches"][-1] == {"switch": "spine", "children": "leaf1,leaf2,leaf3,leaf4"}
    assert block["block"]["block_sizes"] == [4, 8, 16]
    assert block["block"]["blocks"][3] == {"block": "leaf4", "nodes": "n[13-16]"}
    assert flat["flat"] is True
    _golden("leaf-spine-16.topology.yaml", exy.topology_yaml(fab))


def test_topology_yaml_of_nvl72_blocks_are_racks():
    import yaml

    entries = yaml.safe_load(exy.topology_yaml(build(generators.nvl72(2))))
    block = next(e for e in entries if e["topology"] == "block")["block"]
    assert block["block_sizes"] == [18, 36]
    assert [b["block"] for b in block["blocks"]] == ["r001", "r002"]
    with pytest.raises(ConfigError, match="no 'dragonfly' topology"):
        exy.topology_yaml(build(generators.nvl72(2)), default="dragonfly")


def test_slices_of_the_block_level_map_to_segment():
    from fabric_hpc.placement.request import Request

    leaf = build(generators.leaf_spine(16, hosts_per_leaf=4))
    assert ex.block_level(leaf) == "leaf"
    req = Request(nodes=8, gpus_per_node=8, slices=2, slice_level="leaf")
    assert ex.segment_args(leaf, req) == ["--segment=4"]
    assert ex.segment_args(leaf, Request(nodes=8, gpus_per_node=8)) == []
    with pytest.raises(ConfigError, match="no Slurm --segment equivalent"):
        ex.segment_args(leaf, Request(nodes=8, gpus_per_node=8, slices=2, slice_level="spine"))
    nvl = build(generators.nvl72(2))
    assert ex.block_level(nvl) == "nvlink"
    assert ex.segment_args(nvl, Request(nodes=36, gpus_per_node=4, slices=2, slice_level="nvlink")) == [
        "--segment=18"]


def test_tp_groups_wider_than_a_host_map_to_segment():
    """tp=8 on NVL72's 4-GPU trays: each group is two trays in one rack, so Slurm alone must keep
    segments of two hosts in a block; groups inside one host need nothing."""
    from fabric_hpc.placement.request import Request

    nvl = build(generators.nvl72(2))
    assert ex.segment_args(nvl, Request(nodes=8, gpus_per_node=4, tp=8)) == ["--segment=2"]
    assert ex.segment_args(nvl, Request(nodes=36, gpus_per_node=4, tp=72)) == ["--segment=18"]
    assert ex.segment_args(nvl, Request(nodes=8, gpus_per_node=4, tp=4)) == []
    with pytest.raises(ConfigError, match="tp=8 groups .GPUs. have no Slurm --segment"):
        ex.segment_args(nvl, Request(gpus=32, tp=8))


@pytest.mark.parametrize(("fabric", "request_text", "needle", "hint"), [
    (("nvl72", 4), "nodes=36,gpus=2,tp=72", "a tp=72 group over 2 GPUs per host spans 36 hosts", "tp of at most 36"),
    (("nvl72", 4), "nodes=36,gpus=4,tp=144", "a tp=144 group over 4 GPUs per host spans 36 hosts", "tp of at most 72"),
    (("nvl72", 4), "nodes=36,gpus=4,slices=1,slice_level=nvlink", "a slice of nodes=36 / slices=1 is 36 hosts",
     "use slices=2 (18 hosts each)"),
    (("superpod", 2), "nodes=64,gpus=8,slices=1,slice_level=leaf", "a slice of nodes=64 / slices=1 is 64 hosts",
     "use slices=2 (32 hosts each)"),
])
def test_a_segment_larger_than_a_block_is_refused(fabric, request_text, needle, hint):
    """--segment=36 on 18-host NVL72 blocks (or 64 on 32-host leaves) cannot keep a group or slice in
    one block: refused naming the block size and what fits, instead of an option Slurm spreads."""
    from fabric_hpc.placement.request import parse_request

    name, size = fabric
    fab = build(generators.nvl72(size) if name == "nvl72" else generators.superpod(sus=size))
    with pytest.raises(ConfigError) as e:
        ex.segment_args(fab, parse_request(request_text))
    assert needle in e.value.message and "could not keep it in one block" in e.value.message
    assert "hosts each" in e.value.message and hint in e.value.hint


def test_alias_levels_of_the_block_level_map_to_segment():
    """On an NVL72 the rack is the NVLink domain (docs: an alias): slices of racks are blocks too."""
    from fabric_hpc.placement.request import parse_request

    nvl = build(generators.nvl72(4))
    assert ex.segment_args(nvl, parse_request("nodes=36,gpus=4,slices=2,slice_level=rack")) == ["--segment=18"]
    pod = build(generators.superpod(sus=2))
    with pytest.raises(ConfigError, match="no Slurm --segment equivalent"):  # a host is not a leaf here
        ex.segment_args(pod, parse_request("nodes=8,gpus=8,slices=2,slice_level=host"))


@pytest.mark.parametrize(("model", "features", "sm", "arch"), [
    ("GB200", [], "100", "arm64"), ("B200-SXM-180GB", [], "100", "x86_64"), ("H100-SXM5-80GB", [], "90", "x86_64"),
    ("H200", [], "90", "x86_64"), ("H800", [], "90", "x86_64"), ("GH200", [], "90", "arm64"),
    ("A100-SXM4-80GB", [], "80", "x86_64"), ("Mystery-9000", [], None, "x86_64"),
    ("Mystery-9000", ["grace"], None, "arm64"), ("H100-SXM5-80GB", ["aarch64"], "90", "arm64"),
])
def test_nccl_sm_and_arch_follow_the_gpu_model_and_host(model, features, sm, arch):
    root = _nccl_tree(_one_host(gpu_model=model, features=features))
    assert {c.get("arch") for c in root.findall("cpu")} == {arch}
    assert {g.get("sm") for g in root.iter("gpu")} == {sm}


def test_nvlink5_counts_18_links_in_nccl_xml_and_gres():
    """B200/GB200: 18 NVLink5 links of 100 GB/s = 1800 GB/s (nvidia-smi topo: NV18), like H100's
    18 NVLink4 links of 50 GB/s."""
    nvl = build(generators.nvl72(1))
    root = _nccl_tree(nvl, "r001-h01")
    assert [g.find("nvlink").get("count") for g in root.iter("gpu")] == ["18"] * 4
    assert ex.gpu_links(nvl, "r001-h01")[0] == [-1, 18, 18, 18]
    assert "Links=18,-1,18,18" in ex.gres_conf(nvl)
    b200 = _one_host(gpu_model="B200-SXM-180GB", nvlink_gbps=1800, nvswitches=2)
    assert ex.gpu_links(b200, "a1")[0] == [-1] + [18] * 7
    assert ex.gpu_links(_one_host(), "a1")[0] == [-1] + [18] * 7  # H100: 900 / 50


# -- hosts whose GPUs are linked directly (nvswitches: 0): a pair gets its share of the NVLink ----
MESH = Path(__file__).parent / "fixtures" / "nvlink-mesh.yaml"


@pytest.fixture(scope="module")
def mesh():
    from fabric_hpc.topology import load_fabric

    return load_fabric(MESH)


def test_mesh_distance_is_the_direct_link_not_the_gpu_total(mesh):
    edge = mesh.graph.edges["a1/gpu0", "a1/gpu4"]
    assert edge["kind"] == "nvlink" and edge["bandwidth_gbps"] == pytest.approx(300 / 7)
    d = mesh.distance("a1/gpu0", "a1/gpu4")
    assert (d.hops, d.level) == (1, "nvlink") and d.bandwidth_gbps == pytest.approx(300 / 7, abs=1e-3)
    assert mesh.distance("b1/gpu1", "b1/gpu3").bandwidth_gbps == pytest.approx(200.0)
    sw = build(generators.superpod(1))  # through NVSwitches a pair still gets the GPU's full 900
    assert sw.distance("su01-h01/gpu0", "su01-h01/gpu4").bandwidth_gbps == 900.0


def test_mesh_gres_links_are_per_peer(mesh):
    a1, b1 = ex.gpu_links(mesh, "a1"), ex.gpu_links(mesh, "b1")
    assert a1[0] == [-1] + [1] * 7  # 300/7 GB/s ≈ 0.86 of a 50 GB/s link: 1 link each (not 6)
    assert b1[2] == [4, 4, -1, 4]  # HGX A100 4-GPU: 12 links, 4 to each peer
    assert "Links=4,4,-1,4" in ex.gres_conf(mesh)
    root = _nccl_tree(mesh, "b1")
    busid = {g.get("dev"): p.get("busid") for p in root.iter("pci") for g in p.findall("gpu")}
    gpu0 = next(g for g in root.iter("gpu") if g.get("dev") == "0")
    assert [(n.get("target"), n.get("count")) for n in gpu0.findall("nvlink")] == [
        (busid["1"], "4"), (busid["2"], "4"), (busid["3"], "4")]


# -- topology/block: hosts in no NVLink domain are in no block ------------------------------------
@pytest.fixture(scope="module")
def rack_and_dgx():
    """One NVL72 rack (an NVLink domain of 18 hosts) plus two DGX H100 hosts in no such domain."""
    spec = generators.nvl72(1).model_dump(mode="json", exclude_defaults=True)
    spec["host_types"]["dgx"] = generators.DGX_H100.model_dump(mode="json")
    spec["hosts"].append({"names": "dgx[1-2]", "type": "dgx"})
    spec["network"]["groups"][0]["hosts"] += ",dgx[1-2]"
    return build({"fabric": 1, **spec})


def test_block_notes_hosts_in_no_nvlink_domain(rack_and_dgx):
    # Slurm runs them for jobs that can use no block host: written with a note, no longer refused
    # (tests/topology/test_export_outside_blocks.py, tests/slurm/test_block_outside_live.py)
    assert ex.hosts_outside_blocks(rack_and_dgx) == ["dgx1", "dgx2"]
    assert "# note: dgx[1-2] in no multi-host NVLink domain" in ex.topology_conf(rack_and_dgx, "block")
    assert "# block: dgx[1-2]" in exy.topology_yaml(rack_and_dgx, default="block")


def test_topology_yaml_names_the_hosts_its_block_topology_leaves_out(rack_and_dgx):
    import yaml

    text = exy.topology_yaml(rack_and_dgx)  # default tree: every host is in the tree
    assert "# block: dgx[1-2] in no multi-host NVLink domain, so in no block" in text
    entries = yaml.safe_load(text)
    assert next(e for e in entries if e["topology"] == "block")["block"]["blocks"] == [
        {"block": "r001", "nodes": "r001-h[01-18]"}]
    assert "dgx[1-2]" in next(e for e in entries if e["topology"] == "tree")["tree"]["switches"][0]["nodes"]
    assert "# block:" not in exy.topology_yaml(build(generators.nvl72(2)))


def test_nccl_xml_links_follow_the_host_types_pcie():
    """Every device was written as Gen5 x16 whatever ``pcie_gbps`` said, so NCCL assumed 64 GB/s on
    PCIe Gen4 or Gen3 hosts; now the link nearest the declared bandwidth is written."""
    import xml.etree.ElementTree as ET

    from fabric_hpc.topology import build, generators
    from fabric_hpc.topology.discover_sysfs import pcie_gbps

    for gbps, want in ((64.0, ("32.0 GT/s PCIe", "16")), (32.0, ("16.0 GT/s PCIe", "16")),
                       (16.0, ("8.0 GT/s PCIe", "16"))):
        spec = generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=4)
        spec = spec.model_copy(update={"host_types": {
            k: v.model_copy(update={"pcie_gbps": gbps}) for k, v in spec.host_types.items()}})
        links = {(p.get("link_speed"), p.get("link_width"))
                 for p in ET.fromstring(nccl_topo_xml(build(spec), "n1")).iter("pci")}
        assert links == {want}
        assert abs(pcie_gbps(*want[:1], int(want[1])) - gbps) / gbps < 0.05  # the discovery reads it back
