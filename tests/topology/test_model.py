"""Queries on the fabric model, and property tests that generated fabrics are consistent."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology import build, generators, open_fabric


def test_superpod_shape(superpod4):
    s = superpod4.summary()
    assert (s["hosts"], s["gpus"]) == (128, 1024)
    assert s["vertices"]["switch"] == 4 * 8 + 16  # 32 rail leaves, 16 spines
    assert superpod4.host_gpus("su02-h07")[3] == "su02-h07/gpu3"


def test_gpu_info_numa_rail_nvlink(superpod4):
    g = superpod4.gpu("su01-h01/gpu5")
    assert (g.host, g.index, g.numa, g.rail, g.nvlink_domain) == ("su01-h01", 5, 1, 5, "su01-h01")
    assert superpod4.gpu(5) == g


def test_domain_hierarchy(superpod4):
    assert superpod4.domains("su03-h01") == [("nvlink", "su03-h01"), ("leaf", "su03-leaf"), ("spine", "spine")]
    big = build(generators.superpod(8))
    assert big.domains("su05-h01")[-2:] == [("spine", "spine02"), ("core", "core")]
    rack = build(generators.nvl72(2))
    assert rack.domains("r002-h03")[:2] == [("nvlink", "r002"), ("rack", "r002")]


@pytest.mark.parametrize("a, b, hops, bw, level", [
    ("su01-h01/gpu0", "su01-h01/gpu0", 0, float("inf"), "self"),
    ("su01-h01/gpu0", "su01-h01/gpu7", 1, 900.0, "nvlink"),
    ("su01-h01/gpu0", "su01-h02/gpu0", 1, 50.0, "leaf"),      # same rail leaf
    ("su01-h01/gpu0", "su01-h02/gpu1", 3, 50.0, "spine"),     # cross rail: up to the spine
    ("su01-h01/gpu0", "su04-h32/gpu0", 3, 50.0, "spine"),
])
def test_distance_superpod(superpod4, a, b, hops, bw, level):
    d = superpod4.distance(a, b)
    assert (d.hops, d.bandwidth_gbps, d.level) == (hops, bw, level)


def test_distance_nvl72_rack_is_nvlink():
    fab = build(generators.nvl72(2))
    inside = fab.distance("r001-h01/gpu0", "r001-h18/gpu3")
    across = fab.distance("r001-h01/gpu0", "r002-h01/gpu0")
    assert (inside.level, inside.bandwidth_gbps) == ("nvlink", 1800.0)
    assert across.level == "leaf" and across.bandwidth_gbps == 50.0


def test_distance_pcie_only_host_crosses_sockets():
    spec = generators.fat_tree(4, gpus_per_host=4)
    spec = spec.model_copy(update={"host_types": {"node": spec.host_types["node"].model_copy(
        update={"nvlink_gbps": 0.0, "nvswitches": 0})}})
    fab = build(spec)
    same_socket, cross = fab.distance("h0001/gpu0", "h0001/gpu1"), fab.distance("h0001/gpu0", "h0001/gpu3")
    assert (same_socket.level, same_socket.hops, cross.hops) == ("host", 1, 2)
    assert same_socket.bandwidth_gbps == 64.0


def test_unknown_names_are_clear_errors(superpod4):
    with pytest.raises(NotFoundError, match="no host 'nope'"):
        superpod4.domains("nope")
    with pytest.raises(NotFoundError, match="no GPU"):
        superpod4.distance("su01-h01/gpu9", "su01-h01/gpu0")


def test_rollup_counts_free_gpus(superpod4):
    free = np.ones(len(superpod4.gpus), dtype=bool)
    free[superpod4.gpu_pos["su01-h01/gpu0"]] = False
    free[[superpod4.gpu_pos[g] for g in superpod4.host_gpus("su02-h03")]] = False
    r = superpod4.rollup(free)
    assert r["host"]["su01-h01"] == 7 and r["host"]["su02-h03"] == 0
    assert r["leaf"]["su01-leaf"] == 255 and r["leaf"]["su02-leaf"] == 248
    assert r["spine"]["spine"] == 1024 - 9


def test_vectorised_pairs_match_scalar(superpod4):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 1024, 200), rng.integers(0, 1024, 200)
    hops, bw, _ = superpod4.index.pair(a, b)
    for i in range(200):
        d = superpod4.distance(int(a[i]), int(b[i]))
        assert (hops[i], bw[i]) == (d.hops, d.bandwidth_gbps)


# -- property tests over generated fabrics ---------------------------------------------------------
fabrics = st.one_of(
    st.builds(generators.superpod, st.integers(1, 6), hosts_per_su=st.integers(1, 6),
              sus_per_spine_group=st.integers(1, 3)),
    st.builds(generators.nvl72, st.integers(1, 3), racks_per_su=st.integers(1, 2)),
    st.builds(generators.fat_tree, st.sampled_from([2, 4, 6]), gpus_per_host=st.integers(1, 8)),
    st.integers(1, 20).flatmap(lambda n: st.builds(generators.leaf_spine, st.just(n),
                                                   hosts_per_leaf=st.integers(1, n), gpus=st.integers(1, 8))),
)
prop = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@prop
@given(fabrics)
def test_generated_fabric_is_connected(spec):
    fab = build(spec)
    g = fab.graph
    assert nx.is_connected(g)
    assert all(g.nodes[n]["kind"] == "gpu" for n in fab.gpus)
    for u, v, data in g.edges(data=True):
        assert data["bandwidth_gbps"] > 0 and data["latency_us"] >= 0, (u, v)


@prop
@given(fabrics)
def test_rails_are_consistent(spec):
    fab = build(spec)
    g = fab.graph
    for gpu in fab.gpus:
        info = fab.gpu(gpu)
        nic = f"{info.host}/nic{info.rail}"
        assert g.has_edge(gpu, nic), f"{gpu} is not attached to its rail NIC {nic}"
        leaf = [n for n in g.neighbors(nic) if g.nodes[n]["kind"] == "switch"]
        assert len(leaf) == 1
        group = fab.groups[g.nodes[leaf[0]]["group"]]
        assert g.nodes[leaf[0]]["index"] == info.rail % len(group.switches)


@prop
@given(fabrics, st.data())
def test_rollups_add_up(spec, data):
    fab = build(spec)
    free = np.array(data.draw(st.lists(st.booleans(), min_size=len(fab.gpus), max_size=len(fab.gpus))), bool)
    r = fab.rollup(free)
    total = int(free.sum())
    assert sum(r["host"].values()) == total
    for level in fab.levels:
        assert sum(r[level].values()) == total
    for name, group in fab.groups.items():
        children = [c for c, cg in fab.groups.items() if cg.parent == name]
        if children:
            assert r[group.level][name] == sum(r[fab.groups[c].level][c] for c in children)
        else:
            assert r[group.level][name] == sum(r["host"][h] for h in group.hosts)


@prop
@given(fabrics, st.data())
def test_index_agrees_with_graph_paths(spec, data):
    """O(1) hop counts equal the switches on the graph's shortest NIC-to-NIC path."""
    fab = build(spec)
    g = fab.graph
    switches = [n for n, k in g.nodes(data="kind") if k == "switch"]
    for _ in range(10):
        a, b = data.draw(st.integers(0, len(fab.gpus) - 1)), data.draw(st.integers(0, len(fab.gpus) - 1))
        d = fab.distance(a, b)
        ga, gb = fab.gpu(a), fab.gpu(b)
        if ga.host == gb.host or (ga.nvlink_domain is not None and ga.nvlink_domain == gb.nvlink_domain):
            assert d.level in ("self", "nvlink", "host")
            continue
        nic_a, nic_b = f"{ga.host}/nic{ga.rail}", f"{gb.host}/nic{gb.rail}"
        sub = g.subgraph([*switches, nic_a, nic_b])
        path = nx.shortest_path(sub, nic_a, nic_b)
        assert d.hops == len(path) - 2, (fab.gpus[a], fab.gpus[b], path)
        bottleneck = min(sub.edges[u, v]["bandwidth_gbps"] for u, v in zip(path, path[1:]))
        assert bottleneck <= d.bandwidth_gbps + 1e-9 <= min(g.nodes[nic_a]["gbps"], g.nodes[nic_b]["gbps"]) + 1e-6


def test_open_fabric_default_is_4su_superpod():
    assert open_fabric().summary()["gpus"] == 1024


@pytest.mark.parametrize("ref, needle", [
    ("superpod:sus=", r"sus='' must be a whole number"),
    ("superpod:sus=0x10", r"sus='0x10' must be a whole number"),
    ("superpod:sus=１", r"sus='１' must be a whole number"),  # int() reads full-width digits
    ("superpod:sus=1_0", r"sus='1_0' must be a whole number"),
    ("superpod:sus=1.5", r"sus=1.5 must be a whole number"),
    ("fat-tree:k=four", r"k='four' must be a whole number"),
    # a '/' in a parameter is still a generator reference, refused by the name rule (not "no such file")
    ("leaf-spine:hosts=4,prefix=../x", r"prefix='../x' must start with a letter"),
])
def test_generator_parameters_of_the_wrong_kind_are_named(ref, needle):
    with pytest.raises(ConfigError, match=needle):
        open_fabric(ref)


def test_api_misuse_is_a_config_error():
    """Wrong types from user code get a ConfigError naming the fix, not a TypeError/AttributeError."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.placement import ClusterState
    from fabric_hpc.topology import Fabric, build, generators, open_fabric, write_report

    for call, needle in [(lambda: generators.superpod("4"), "sus must be a whole number"),
                         (lambda: generators.fat_tree(k=4, nic_gbps=float("nan")), "nic_gbps must be a finite number"),
                         (lambda: build(5), "takes a FabricSpec or a mapping"),
                         (lambda: build({"bogus": 1}), "bogus"),
                         (lambda: Fabric("superpod:sus=1"), "takes a FabricSpec"),
                         (lambda: open_fabric(5), "a YAML path or a generator reference"),
                         (lambda: open_fabric(""), "a YAML path or a generator reference"),
                         (lambda: write_report(open_fabric("superpod:sus=1"), "/tmp/x.html", occupancy={5: "j"}),
                          "occupancy key 5")]:
        with pytest.raises(ConfigError, match=needle):
            call()
    fab = build(generators.superpod(sus=1).model_dump(mode="json"))  # a mapping of the file's keys builds too
    st = ClusterState(fab)
    st.allocate("j", "su01-h01/gpu0")  # one GPU id, not its characters
    st.set_down("su01-h02")
    assert st.job_gpus("j") == ["su01-h01/gpu0"] and int((st.free == 0).sum()) == 9
