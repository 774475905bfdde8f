"""The hosts' NIC count of an imported ibnetdiscover dump: without --host-type, the default host type's
``nics`` is the number of cabled HCA ports most hosts have, hosts with another number get a host type
of their own, so each leaf's host bandwidth is what is cabled (docs/topology-sources.md, "NICs").
Dumps in ibnetdiscover's real format (ibnet_dump.py) and the real fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import expand
from fabric_hpc.topology import build
from fabric_hpc.topology.importers import import_csv
from fabric_hpc.topology.model import rail_of
from fabric_hpc.topology.spec import FabricSpec

from fabric_hpc.topology.assemble import assemble
from fabric_hpc.topology.assemble_network import join_network

from .ibnet_dump import Fabric, rail_fabric
from .test_discover_mnnvl import _write, tray

FIXTURES = Path(__file__).parent / "fixtures" / "ibnetdiscover"
SPINES = tuple(f"IBSPINE-{s:02d}" for s in range(1, 5))


def imported(tmp_path: Path, text: str, **options) -> FabricSpec:
    path = tmp_path / "fab.txt"
    path.write_text(text)
    return import_csv(path, **options)


def leaf_ratios(spec: FabricSpec) -> dict[str, float]:
    """Each leaf group's hosts' NIC bandwidth : its uplinks, as the fabric models them."""
    ht = {h: spec.host_types[e.type] for e in spec.hosts for h in expand(e.names)}
    return {g.name: sum(ht[h].nics * ht[h].nic_gbps for h in expand(g.hosts)) / (g.uplink_gbps * g.switches)
            for g in spec.network.groups if g.hosts and g.uplink_gbps}


def test_four_port_hosts_import_as_cabled(tmp_path):
    """2 SUs of 4 rail leaves, 4 hosts each with one NDR HCA per rail, each leaf with 4 NDR cables up:
    non-blocking. Imported with 8 NICs per host it was 2:1."""
    spec = imported(tmp_path, rail_fabric(2, 4, 4, 4).text(sharp_on=SPINES))
    assert {t: (h.nics, h.nic_gbps) for t, h in spec.host_types.items()} == {"dgx-h100": (4, 50)}
    assert {g.name: g.switches for g in spec.network.groups} == {"leaf01": 4, "leaf02": 4, "spine01": 4}
    assert leaf_ratios(spec) == {"leaf01": 1.0, "leaf02": 1.0}
    assert "nics 4 from the dump: the cabled HCA ports of every host" in spec.description
    assert "host type dgx-h100 has 8 NICs" not in spec.description
    fab = build(spec)
    assert sorted(v for _, v, d in fab.graph.edges("su1-dgx01/nic0", data=True)
                  if d["kind"] == "network") == ["leaf01-0"]


@pytest.mark.parametrize("rails, spines, ratio, cabled", [
    (1, 4, 1.0, "1,600:1,600 Gb/s (1:1)"),  # 4 hosts x 1 NDR port, 4 NDR cables up
    (2, 2, 2.0, "3,200:1,600 Gb/s (2:1)")])  # 4 hosts x 2 ports on 2 rail leaves, 2 cables up each
def test_one_and_two_port_hosts(tmp_path, rails, spines, ratio, cabled):
    """At 8 NICs per host both leaf groups were 8:1."""
    spec = imported(tmp_path, rail_fabric(1, rails, 4, spines).text())
    assert spec.host_types["dgx-h100"].nics == rails
    assert leaf_ratios(spec) == {"leaf01": ratio}
    assert f"leaf01 {cabled}" in spec.description


def gpu_leaves(spec: FabricSpec, host: str) -> list[str]:
    """The leaf switch each of a host's GPUs is modelled on (its rail NIC's switch)."""
    fab = build(spec)
    ht = spec.host_types[next(e.type for e in spec.hosts if host in expand(e.names))]
    return [next(v for _, v, d in fab.graph.edges(f"{host}/nic{rail_of(ht, i)}", data=True)
                 if d["kind"] == "network") for i in range(ht.gpus)]


@pytest.mark.parametrize("down, named", [
    ({3}, "leaf01-3 'MF0;IBLEAF-04-01:MQM9701/U1'"),  # a middle rail: its NICs were on leaves 01-07
    ({7}, "leaf01-7 'MF0;IBLEAF-08-01:MQM9701/U1'"),  # the last rail: 7 NICs put GPU i on leaf i*7//8
    ({2, 7}, "leaf01-2 'MF0;IBLEAF-03-01:MQM9701/U1', leaf01-7 'MF0;IBLEAF-08-01:MQM9701/U1'")])
def test_a_host_with_a_rail_down_keeps_its_rails(tmp_path, down, named):
    """8 rail leaves, 4 DGXs, one of them with ports down: its GPU i is modelled on the leaf of GPU i of
    the others, as in the dump (mlx5_i on rail leaf i), the missing ports counted as up and named."""
    spec = imported(tmp_path, rail_fabric(1, 8, 4, 2, down={"su1-dgx02": down}).text())
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100": 8}
    for host in ("su1-dgx01", "su1-dgx02", "su1-dgx04"):
        assert gpu_leaves(spec, host) == [f"leaf01-{i}" for i in range(8)]
    assert ("1 host with no port on a leaf switch of their rail group where the others have one (a port "
            "down or not cabled when the dump was taken) keeps the NICs of their group: the model puts NIC i "
            "on the group's switch i (GPU i on NIC i), so each NIC stays on its own leaf, and counts the "
            "missing ports as up, at the host's rate (bandwidth it lacks now): su1-dgx02 (no port on "
            + named + ")") in spec.description
    assert "nics 8 from the dump: the cabled HCA ports of 3 of 4 hosts" in spec.description


def test_hosts_with_last_ports_down_keep_their_group_count(tmp_path):
    """Most hosts have 4 ports; 2 have 3, 1 has 2 (their last rails down): each keeps 4 NICs, one on
    each rail leaf, the missing ones counted as up (1:1 as designed) and named in the description."""
    ports = {"su1-dgx02": 3, "su2-dgx04": 3, "su2-dgx01": 2}
    spec = imported(tmp_path, rail_fabric(2, 4, 4, 4, ports=ports).text())
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100": 4}
    assert ("su1-dgx02 (no port on leaf01-3 'MF0;IBLEAF-04-01:MQM9701/U1'), su2-dgx01 (no port on leaf02-2"
            in spec.description)
    assert leaf_ratios(spec) == {"leaf01": 1.0, "leaf02": 1.0}
    assert gpu_leaves(spec, "su2-dgx01") == gpu_leaves(spec, "su2-dgx02")


def test_counts_and_rates_both_differ(tmp_path):
    """An HDR host on a leaf of its own (a group of one switch) has 1 NIC; su1-dgx03, a port down on
    its 2-rail group, keeps 2."""
    fab = rail_fabric(1, 2, 3, 2, ports={"su1-dgx03": 1})
    fab.hca("hdr01 mlx5_0", "IBLEAF-HDR", rate="4xHDR")
    fab.cable("IBLEAF-HDR", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert {t: (h.nics, h.nic_gbps) for t, h in spec.host_types.items()} == {
        "dgx-h100-400g": (2, 50), "dgx-h100-200g-1nic": (1, 25)}
    assert ("nics 2 from the dump: the cabled HCA ports of 2 of 4 hosts and 1 with fewer ports kept at 2 "
            "(ports down, below); hosts with another count get a host type of their own (dgx-h100-<n>nic): "
            "1 host (hdr01) 1 NIC;") in spec.description
    assert "su1-dgx03 (no port on leaf01-1 'MF0;IBLEAF-02-01:MQM9701/U1')" in spec.description


def test_an_explicit_host_type_wins_with_a_note(tmp_path):
    spec = imported(tmp_path, rail_fabric(1, 4, 4, 4, ports={"su1-dgx01": 3}).text(), host_type="hgx-h800")
    assert {t: h.nics for t, h in spec.host_types.items()} == {"hgx-h800": 8}
    assert ("host type hgx-h800 has 8 NICs, most hosts here have 4 cabled HCA ports: give a --host-type "
            "with nics: 4 for their real bandwidth") in spec.description
    assert "from the dump" not in spec.description


def test_dgx_h100_eight_rails_come_out_as_rail_groups(tmp_path):
    """An 8-rail DGX H100 SuperPOD-like dump: 2 SUs of 8 rail leaves (one compute HCA per GPU, HCA n on
    rail n), 4 hosts each, each leaf with 4 NDR cables up (one to each of 4 spines), SHArP on the
    spines. The storage ports of a DGX are on another fabric, another ibnetdiscover (and the real
    topograph dump shows none)."""
    spec = imported(tmp_path, rail_fabric(2, 8, 4, 4).text(sharp_on=SPINES))
    groups = {g.name: g for g in spec.network.groups}
    assert {n: (g.switches, g.hosts) for n, g in groups.items() if g.hosts} == {
        "leaf01": (8, "su1-dgx[01-04]"), "leaf02": (8, "su2-dgx[01-04]")}
    assert groups["spine01"].children == ["leaf01", "leaf02"]
    assert {t: (h.nics, h.nic_gbps) for t, h in spec.host_types.items()} == {"dgx-h100": (8, 50)}
    assert leaf_ratios(spec) == {"leaf01": 1.0, "leaf02": 1.0}
    assert "leaf01 12,800:12,800 Gb/s (1:1), leaf02 12,800:12,800 Gb/s (1:1)" in spec.description
    fab = build(spec)
    rails = [next(v for _, v, d in fab.graph.edges(f"su2-dgx03/nic{n}", data=True) if d["kind"] == "network")
             for n in range(8)]
    assert rails == [f"leaf02-{n}" for n in range(8)]  # one NIC on each rail leaf


def test_cli_import_of_a_four_port_dump(tmp_path, capsys):
    path = tmp_path / "fab.txt"
    path.write_text(rail_fabric(1, 4, 2, 4).text())
    out = tmp_path / "fab.yaml"
    assert main(["topology", "import", str(path), "-o", str(out)]) == 0
    assert "    nics: 4\n" in out.read_text()
    assert main(["topology", "validate", str(out)]) == 0


def test_a_host_with_more_ports_than_a_host_type_holds(tmp_path):
    with pytest.raises(ConfigError, match=r"fab.txt: host 'su1-dgx01' has 66 cabled HCA ports, more than the "
                                          r"64 NICs a host type holds \(2 such hosts\)") as exc:
        imported(tmp_path, rail_fabric(1, 66, 2, 1).text())
    assert "--host-type" in exc.value.hint
    spec = imported(tmp_path, rail_fabric(1, 66, 2, 1).text(), host_type="hgx-h800")
    assert spec.host_types["hgx-h800"].nics == 8


def test_assemble_reads_a_dump_of_wide_hosts(tmp_path, capsys):
    """assemble keeps the discovered hosts' nics: the dump's port counts (66 here) are not checked."""
    dump = tmp_path / "fab.txt"
    dump.write_text(rail_fabric(1, 66, 2, 1).text())
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for i in (1, 2):
        _write(hosts, f"su1-dgx{i:02d}", tray(1))
    out = tmp_path / "c.yaml"
    assert main(["topology", "assemble", str(hosts), "--network", str(dump), "-o", str(out)]) == 0
    assert "error" not in capsys.readouterr().err
    spec, _ = join_network(assemble([hosts])[0], dump)
    assert list(spec.host_types) == ["gb200-x4"] and "cabled HCA ports" not in spec.description


def test_real_superpod_hosts_as_cabled():
    """topograph's DGX H100 SuperPOD excerpt: SU 8's DGXs have 4 cabled HCAs, SU 1's 3 (its leaf 03-01
    is absent), the UFM server and `ubuntu` 2 on SU 8's first 2 leaves by design: servers, not DGXs with
    ports down, they keep their 2 (they were modelled with 4 x 400G). Imported at 8 NICs its leaf
    groups were 1.8:1 and 1.51:1 for a fabric cabled 1:1."""
    spec = import_csv(FIXTURES / "topograph-dgx-h100-su1-su8.txt")
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100": 4, "dgx-h100-3nic": 3,
                                                                "dgx-h100-2nic": 2}
    assert {e.type: e.names for e in spec.hosts}["dgx-h100-2nic"] == "B11-P1-CUFM-02,ubuntu"
    assert {e.type: len(expand(e.names)) for e in spec.hosts} == {"dgx-h100": 14, "dgx-h100-3nic": 10,
                                                                  "dgx-h100-2nic": 2}
    assert ("nics 4 from the dump: the cabled HCA ports of 14 of 26 hosts; hosts with another count get a "
            "host type of their own (dgx-h100-<n>nic): 10 hosts (a05-p1-dgx-01-c[01,03-04,09,12], ...) "
            "3 NICs, 2 hosts (B11-P1-CUFM-02,ubuntu) 2 NICs;" in spec.description)
    assert "no port on" not in spec.description and "ports down" not in spec.description
    ratios = leaf_ratios(spec)
    assert ratios["leaf01"] == pytest.approx(3000 / 3550) and ratios["leaf02"] == pytest.approx(1500 / 2650)


def test_a_dual_homed_server_on_a_fat_tree_pads_no_host(tmp_path):
    """4 leaves of 4 one-port nodes and a storage server cabled to leaf0 and leaf3 (it joined them in
    one leaf group; now neither): only stor01 has 2 NICs. node[30-33] were modelled with 2 ("no port on
    leaf0"), then on leaf0."""
    fab = Fabric()
    for leaf in range(4):
        for h in range(4):
            fab.hca(f"node{leaf}{h} mlx5_0", f"leaf{leaf}")
        fab.cable(f"leaf{leaf}", "spine0")
    fab.hca("stor01 mlx5_0", "leaf0")
    fab.hca("stor01 mlx5_1", "leaf3")
    spec = imported(tmp_path, fab.text())
    assert {e.type: e.names for e in spec.hosts} == {"dgx-h100": "node[00-03,10-13,20-23,30-33]",
                                                     "dgx-h100-2nic": "stor01"}
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100": 1, "dgx-h100-2nic": 2}
    assert ("nics 1 from the dump: the cabled HCA ports of 16 of 17 hosts; hosts with another count get a "
            "host type of their own (dgx-h100-<n>nic): 1 host (stor01) 2 NICs;") in spec.description
    assert "no port on" not in spec.description and "ports down" not in spec.description
    assert nic_leaves(spec)["node30"] == ["leaf04"] and len(spec.network.groups) == 5


def test_hosts_of_two_ports_on_one_leaf_are_no_rail_group(tmp_path):
    """Hosts of a dual-port HCA both cabled to one leaf: a host with one of them down has 1 NIC, not 2
    (no rail to keep on its leaf)."""
    fab = Fabric()
    for h in range(1, 5):
        for port in range(1 if h == 4 else 2):
            fab.hca(f"gpu{h:02d} mlx5_{port}", "leaf0")
    fab.cable("leaf0", "spine0")
    spec = imported(tmp_path, fab.text())
    assert {e.type: e.names for e in spec.hosts} == {"dgx-h100": "gpu[01-03]", "dgx-h100-1nic": "gpu04"}
    assert "ports down" not in spec.description


def test_real_rails_and_qdr_fixtures():
    assert import_csv(FIXTURES / "rails-2x2.txt").host_types["dgx-h100"].nics == 2
    spec = import_csv(FIXTURES / "x5-psmn-qdr.txt", node_name_map=FIXTURES / "x5-psmn.node-name-map")
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100-16g": 1, "dgx-h100-32g": 1}
    assert leaf_ratios(spec)["leaf02"] == 2.0  # 24 QDR hosts, 12 QDR cables up; at 8 NICs it was 16:1


def test_assemble_network_keeps_the_discovered_hosts(tmp_path):
    """`fabric topology assemble --network` reads the dump with the importer: hosts of other port counts
    (here one with a port down) get no host type of the dump's; the discovered ones stay, and the
    uplinks are the cables'."""
    dump = tmp_path / "fab.txt"
    dump.write_text(rail_fabric(1, 4, 4, 4, ports={"su1-dgx04": 3}).text(sharp_on=SPINES))
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for i in range(1, 5):
        _write(hosts, f"su1-dgx{i:02d}", tray(1))
    spec, notes = join_network(assemble([hosts])[0], dump)
    assert notes == [] and list(spec.host_types) == ["gb200-x4"]
    groups = {g.name: g for g in spec.network.groups}
    assert (groups["leaf01"].switches, groups["leaf01"].uplink_gbps) == (4, 4 * 400 / 8)
    out = tmp_path / "c.yaml"
    assert main(["topology", "assemble", str(hosts), "--network", str(dump), "-o", str(out)]) == 0


def test_a_padded_host_of_another_count_is_counted_apart(tmp_path):
    """6 hosts of 4 rails (the common count) and an 8-rail group of 3, big02 with a port down: kept at
    8 and said to be, apart from the hosts cabled with 8."""
    fab = rail_fabric(1, 4, 6, 2)
    for rail in range(8):
        for h in range(1, 4):
            if (h, rail) != (2, 5):
                fab.hca(f"big{h:02d} mlx5_{rail}", f"R8-{rail}")
        fab.cable(f"R8-{rail}", "IBSPINE-01")
    spec = imported(tmp_path, fab.text())
    assert {t: h.nics for t, h in spec.host_types.items()} == {"dgx-h100": 4, "dgx-h100-8nic": 8}
    assert ("nics 4 from the dump: the cabled HCA ports of 6 of 9 hosts; hosts with another count get a "
            "host type of their own (dgx-h100-<n>nic): 3 hosts (big[01-03]) 8 NICs (1 of them with fewer "
            "ports: ports down, below);") in spec.description
    assert "big02 (no port on leaf02-5 'MF0;R8-5:MQM9701/U1')" in spec.description


def nic_leaves(spec: FabricSpec) -> dict[str, list[str]]:
    """Each host's leaf switches as modelled (NIC i's, in NIC order: ``leaf02-3``, group leaf02's 4th
    switch in the dump's order)."""
    fab = build(spec)
    return {h: [v for n in range(spec.host_types[e.type].nics)
                for _, v, d in fab.graph.edges(f"{h}/nic{n}", data=True) if d["kind"] == "network"]
            for e in spec.hosts for h in expand(e.names)}


def test_a_server_on_two_sus_leaves_them_apart(tmp_path):
    """A UFM server on rail 1 of two SUs: the SUs stay two rail groups, each host's NIC i on its own
    SU's leaf i, su2-dgx03 (a port down) kept at 4 on SU 2's leaves; ufm01 sits in SU 1's group, its
    port on SU 2 said in the description. The server made one group of 8 leaves: SU 2's hosts were
    modelled on SU 1's leaves (validate: 4 of its 8 switches carry no NIC)."""
    fab = rail_fabric(2, 4, 4, 2, ports={"su2-dgx03": 3})
    fab.hca("ufm01 mlx5_0", "IBLEAF-01-01")
    fab.hca("ufm01 mlx5_1", "IBLEAF-01-02")
    spec = imported(tmp_path, fab.text())
    assert [(g.name, g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [
        ("leaf01", "su1-dgx[01-04],ufm01", 4), ("leaf02", "su2-dgx[01-04]", 4)]
    assert {e.type: e.names for e in spec.hosts} == {"dgx-h100": "su1-dgx[01-04],su2-dgx[01-04]",
                                                     "dgx-h100-2nic": "ufm01"}
    leaves = nic_leaves(spec)
    assert all(leaves[f"su{su}-dgx{h:02d}"] == [f"leaf0{su}-{r}" for r in range(4)]
               for su in (1, 2) for h in range(1, 5))
    assert leaves["ufm01"] == ["leaf01-0", "leaf01-1"]
    assert "su2-dgx03 (no port on leaf02-3 'MF0;IBLEAF-04-02:MQM9701/U1')" in spec.description
    assert ("1 host (ufm01) cabled to leaves of several leaf groups (a UFM, storage or management "
            "server, say) join none" in spec.description)
    assert "ufm01 in leaf01 (1 port on leaf02)" in spec.description


def test_leaves_chained_by_servers_keep_their_hosts(tmp_path):
    """70 leaves of a one-port node each chained by 69 two-port storage servers: 70 leaf groups of one
    switch, each node on its own leaf. They were one group of 70 (68 carrying no NIC), node01-69
    modelled on leaf00."""
    fab = Fabric()
    for leaf in range(70):
        fab.hca(f"node{leaf:02d} mlx5_0", f"leaf{leaf:02d}")
        fab.cable(f"leaf{leaf:02d}", f"spine{leaf // 35}")
    fab.cable("spine0", "core")
    fab.cable("spine1", "core")
    for k in range(69):
        fab.hca(f"stor{k:02d} mlx5_0", f"leaf{k:02d}")
        fab.hca(f"stor{k:02d} mlx5_1", f"leaf{k + 1:02d}")
    spec = imported(tmp_path, fab.text())
    leaf_groups = [g for g in spec.network.groups if g.hosts]
    assert len(leaf_groups) == 70 and {g.switches for g in leaf_groups} == {1}
    # every host keeps its cabled ports (1 or 2): it was refused, node64 (1 port) said to have 65 cabled
    # HCA ports, more than a host type holds
    assert {e.type: len(expand(e.names)) for e in spec.hosts} == {"dgx-h100": 70, "dgx-h100-2nic": 69}
    leaves = nic_leaves(spec)
    assert all(leaves[f"node{k:02d}"] == [f"leaf{k + 1:02d}"] for k in range(70))
    assert leaves["stor05"] == ["leaf06", "leaf06"]
    assert "69 hosts (stor[00-04], ...) cabled to leaves of several leaf groups" in spec.description


def test_a_real_superpod_server_on_two_sus(tmp_path):
    """topograph's SuperPOD excerpt with the UFM server given a third port on SU 1 (a default-described
    CA named by --node-name-map): SU 1 and SU 8 stay two rail groups as without it. They were one group
    of 7 switches (SU 1's DGXs modelled on SU 8's leaves)."""
    names = tmp_path / "map"
    names.write_text('0xe09d7303002334dc "B11-P1-CUFM-02 mlx5_2"\n')
    spec = import_csv(FIXTURES / "topograph-dgx-h100-su1-su8.txt", node_name_map=names)
    plain = import_csv(FIXTURES / "topograph-dgx-h100-su1-su8.txt")
    assert ([(g.hosts, g.switches) for g in spec.network.groups]
            == [(g.hosts, g.switches) for g in plain.network.groups])
    assert [g.switches for g in spec.network.groups] == [4, 3, 9]
    assert "B11-P1-CUFM-02 in leaf01 (1 port on leaf02)" in spec.description
