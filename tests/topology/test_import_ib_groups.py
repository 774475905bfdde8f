"""Leaf groups of an imported ibnetdiscover dump (fabric_hpc/topology/ib_groups.py): one-port hosts on
rail leaves, dual-homed storage servers on a fat tree, a storage leaf shared by two scalable units
(docs/topology-sources.md, "ibnetdiscover")."""

from __future__ import annotations

import pytest

from .ibnet_dump import Fabric, rail_fabric
from .test_import_ib_nics import imported, nic_leaves


@pytest.mark.parametrize("cpus", [4, 5, 20])
def test_one_port_nodes_on_rail_leaves_keep_the_rail_group(tmp_path, cpus):
    """1 SU of 4 rails, 4 DGXs and ``cpus`` one-port nodes on each rail leaf (login, storage or CPU
    nodes): one rail group of 4 switches, each DGX's NIC i on rail i. With 5 or more such nodes a leaf,
    every rail leaf was a group of its own, each DGX with all 4 NICs on leaf01 and called a server."""
    fab = rail_fabric(1, 4, 4, 2)
    for rail in range(4):
        for i in range(cpus):
            fab.hca(f"cpu{rail}{i:02d} mlx5_0", f"IBLEAF-{rail + 1:02d}-01")
    spec = imported(tmp_path, fab.text())
    assert [g.switches for g in spec.network.groups if g.hosts] == [4]
    leaves = nic_leaves(spec)
    assert all(leaves[f"su1-dgx{h:02d}"] == [f"leaf01-{r}" for r in range(4)] for h in range(1, 5))
    assert "several leaf groups" not in spec.description and "server" not in spec.description


@pytest.mark.parametrize("servers", [1, 3, 4, 7])
def test_dual_homed_servers_join_no_fat_tree_leaves(tmp_path, servers):
    """4 leaves of 4 one-port nodes and ``servers`` storage servers each cabled to leaf0 and leaf1: the
    leaves stay 4 groups, node1x on leaf02, the servers named in the description. With 4 servers (as
    many ports as the nodes') leaf0 and leaf1 were one group, node1x modelled on leaf0, unsaid."""
    fab = Fabric()
    for leaf in range(4):
        for h in range(4):
            fab.hca(f"node{leaf}{h} mlx5_0", f"leaf{leaf}")
        fab.cable(f"leaf{leaf}", "spine0")
    for s in range(servers):
        fab.hca(f"stor{s} mlx5_0", "leaf0")
        fab.hca(f"stor{s} mlx5_1", "leaf1")
    spec = imported(tmp_path, fab.text())
    assert [g.switches for g in spec.network.groups if g.hosts] == [1, 1, 1, 1]
    leaves = nic_leaves(spec)
    assert leaves["node10"] == leaves["node13"] == ["leaf02"] and leaves["stor0"] == ["leaf01", "leaf01"]
    assert "stor0 in leaf01 (1 port on leaf02)" in spec.description


def test_a_storage_leaf_shared_by_two_sus_leaves_them_apart(tmp_path):
    """2 SUs of 4 rails, each DGX also with a port on one storage leaf: SU 1's group takes the storage
    leaf (5 switches), SU 2 keeps its 4 rail leaves, each DGX's NIC i on its own SU's rail i, and the
    description names the shared leaf and SU 2's hosts on it. SU 2's 4 leaves were put in SU 1's group
    (9 switches, none of SU 2's carrying a NIC), its DGXs modelled on SU 1's leaves, unsaid."""
    fab = rail_fabric(2, 4, 4, 2)
    for su in (1, 2):
        for h in range(1, 5):
            fab.hca(f"su{su}-dgx{h:02d} mlx5_8", "STOR-A")
    fab.cable("STOR-A", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert [(g.name, g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [
        ("leaf01", "su1-dgx[01-04]", 5), ("leaf02", "su2-dgx[01-04]", 4)]
    leaves = nic_leaves(spec)
    assert leaves["su1-dgx01"] == [f"leaf01-{r}" for r in range(5)]
    assert leaves["su2-dgx04"] == [f"leaf02-{r}" for r in range(4)] + ["leaf02-0"]
    assert ("1 leaf switch shared by the hosts of several leaf groups (a storage leaf every scalable unit "
            "has a port on, say): each goes to the one of those groups whose other leaves come first in "
            "the dump") in spec.description
    assert "leaf01-4 'MF0;STOR-A:MQM9701/U1' (4 hosts: su2-dgx[01-04])" in spec.description


def test_ports_on_a_leaf_of_another_group_are_named(tmp_path):
    """ufm01 on rail 1 of SU 1 and on leaf X, which su2-dgx01 also has 2 ports on; X is home to no host
    and goes to ufm01's group (SU 1): su2-dgx01's ports there are named in the description (they were
    not)."""
    fab = rail_fabric(2, 2, 2, 2)
    fab.hca("ufm01 mlx5_0", "IBLEAF-01-01")
    fab.hca("ufm01 mlx5_1", "LEAF-X")
    fab.hca("su2-dgx01 mlx5_2", "LEAF-X")
    fab.hca("su2-dgx01 mlx5_3", "LEAF-X")
    fab.cable("LEAF-X", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert [(g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [
        ("su1-dgx[01-02],ufm01", 3), ("su2-dgx[01-02]", 2)]
    assert "su2-dgx01 in leaf02 (2 ports on leaf01)" in spec.description


@pytest.mark.parametrize("sus", [1, 2])
def test_two_rail_hosts_outnumbered_by_cpu_nodes_keep_their_group(tmp_path, sus):
    """``sus`` SUs of 2 rails, 4 DGXs and 3 one-port CPU nodes on each rail leaf (more one-port hosts than
    DGXs on the SU's two leaves, fewer on each): one rail group of 2 switches per SU, each DGX's NIC i
    on rail i. Every leaf was a group of its own, each DGX with both NICs on rail 1, called a server."""
    fab = rail_fabric(sus, 2, 4, 2)
    for su in range(1, sus + 1):
        for rail in range(2):
            for i in range(3):
                fab.hca(f"cpu{su}{rail}{i} mlx5_0", f"IBLEAF-{rail + 1:02d}-{su:02d}")
    spec = imported(tmp_path, fab.text())
    assert [g.switches for g in spec.network.groups if g.hosts] == [2] * sus
    leaves = nic_leaves(spec)
    assert all(leaves[f"su{su}-dgx{h:02d}"] == [f"leaf{su:02d}-0", f"leaf{su:02d}-1"]
               for su in range(1, sus + 1) for h in range(1, 5))
    assert "several leaf groups" not in spec.description
    assert "cpu[110-112] (leaf01-1 'MF0;IBLEAF-02-01:MQM9701/U1')" in spec.description


def test_as_many_dual_homed_servers_as_nodes_say_which_nodes_move(tmp_path):
    """4 leaves of 4 one-port nodes, 8 storage servers on leaf0 and leaf1 (as many ports there as the
    nodes'): the two leaves are taken for a 2-rail group, and the description names node1x, modelled
    on the group's first switch (it said nothing)."""
    fab = Fabric()
    for leaf in range(4):
        for h in range(4):
            fab.hca(f"node{leaf}{h} mlx5_0", f"leaf{leaf}")
        fab.cable(f"leaf{leaf}", "spine0")
    for s in range(8):
        fab.hca(f"stor{s} mlx5_0", "leaf0")
        fab.hca(f"stor{s} mlx5_1", "leaf1")
    spec = imported(tmp_path, fab.text())
    assert [g.switches for g in spec.network.groups if g.hosts] == [2, 1, 1]
    assert "node[10-13] (leaf01-1 'MF0;leaf1:MQM9701/U1'" in spec.description


def test_as_many_shared_leaves_as_rails_leave_the_sus_apart(tmp_path):
    """2 SUs of 4 rails, each DGX also on 4 storage leaves (as many as its rails): SU 1 takes the
    storage leaves (8 switches), SU 2 keeps its own 4 rail leaves, each DGX's NIC i on its own SU's
    rail i. They were one group of 12 switches, SU 2's DGXs on SU 1's leaves, unsaid."""
    fab = rail_fabric(2, 4, 4, 2)
    for su in (1, 2):
        for h in range(1, 5):
            for s in range(4):
                fab.hca(f"su{su}-dgx{h:02d} mlx5_{4 + s}", f"STOR-{s + 1}")
    for s in range(4):
        fab.cable(f"STOR-{s + 1}", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert [(g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [
        ("su1-dgx[01-04]", 8), ("su2-dgx[01-04]", 4)]
    assert nic_leaves(spec)["su2-dgx03"][:4] == [f"leaf02-{r}" for r in range(4)]
    assert "4 leaf switches shared by the hosts of several leaf groups" in spec.description


@pytest.mark.parametrize("su", [1, 2])
def test_a_rail_down_in_a_converged_fabric_keeps_its_rails(tmp_path, su):
    """2 SUs of 4 rails, each DGX also on a storage leaf, rail 2 of su<su>-dgx02 down: SU 1 (first in
    the dump) keeps the storage leaf as with no port down, the host keeps the NICs of the others of its
    SU (5 on SU 1, whose group holds the storage leaf, 4 + its storage port on SU 2), NIC 2 on its rail
    2, and is named with its missing port. With SU 1's host down SU 2 took the storage leaf; either way
    the host got a type of its own (4 NICs, its storage port counted as a rail), its port down unsaid."""
    fab = rail_fabric(2, 4, 4, 2, down={f"su{su}-dgx02": {2}})
    for k in (1, 2):
        for h in range(1, 5):
            fab.hca(f"su{k}-dgx{h:02d} mlx5_4", "STOR-A")
    fab.cable("STOR-A", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert [(g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [
        ("su1-dgx[01-04]", 5), ("su2-dgx[01-04]", 4)]
    assert {e.type for e in spec.hosts} == {"dgx-h100"} and spec.host_types["dgx-h100"].nics == 5
    assert nic_leaves(spec)[f"su{su}-dgx02"] == [f"leaf{su:02d}-{r % (6 - su)}" for r in range(5)]
    assert (f"su{su}-dgx02 (no port on leaf{su:02d}-2 'MF0;IBLEAF-03-{su:02d}:MQM9701/U1')"
            in spec.description)
