"""`fabric topology assemble ... --network FILE`: discovered hosts (GB200 tray recordings of
test_discover_mnnvl) joined with the switches of a topology.conf / topology.yaml (test_import_slurm's
SLURM_DOC) or an ibnetdiscover dump (fixtures/ibnetdiscover/rails-2x2.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, open_fabric, parse_spec
from fabric_hpc.topology.assemble import assemble
from fabric_hpc.topology.assemble_network import join_network
from fabric_hpc.topology.importers import import_csv

from .test_discover_mnnvl import CLUSTER, _write, tray
from .test_import_slurm import SLURM_DOC, tree_of

RAILS = Path(__file__).parent / "fixtures" / "ibnetdiscover" / "rails-2x2.txt"
RACKS = ("SwitchName=leaf1 Nodes=gb-a[01-18]\nSwitchName=leaf2 Nodes=gb-b[01-02]\n"
         "SwitchName=spine Switches=leaf[1-2]\n")


def racks(tmp: Path) -> Path:
    """An NVL72 rack gb-a[01-18] (clique 1) and two trays gb-b[01-02] of another (clique 2)."""
    hosts = tmp / "hosts"
    hosts.mkdir()
    for i in range(1, 19):
        _write(hosts, f"gb-a{i:02d}", tray(1))
    for i in (1, 2):
        _write(hosts, f"gb-b{i:02d}", tray(2))
    return hosts


def joined(tmp: Path, hosts: Path, conf: str, **kw) -> tuple:
    path = tmp / "topology.conf"
    path.write_text(conf)
    spec, _ = assemble([hosts])
    return join_network(spec, path, **kw)


def test_topology_conf_network_on_discovered_hosts_round_trips(tmp_path, capsys):
    hosts = racks(tmp_path)
    fragment = hosts / "gb-b02.yaml"  # a host with 4 NICs, not 8: its own host type, its own bandwidth
    fragment.write_text(fragment.read_text().replace("nics: 8", "nics: 4"))
    (tmp_path / "topology.conf").write_text(RACKS)
    out = tmp_path / "cluster.yaml"
    assert main(["topology", "assemble", str(hosts), "--network", str(tmp_path / "topology.conf"),
                 "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["topology", "validate", str(out)]) == 0
    fab = open_fabric(str(out))
    assert [(d.name, d.hosts) for d in fab.spec.nvlink_domains] == [
        (f"{CLUSTER}.1", "gb-a[01-18]"), (f"{CLUSTER}.2", "gb-b[01-02]")]
    assert sorted(fab.spec.host_types) == ["gb200-x4", "gb200-x4-2"]  # the discovered types, not one assumed
    groups = {g.name: g for g in fab.spec.network.groups}
    assert groups["leaf1"].uplink_gbps == 18 * 8 * 50.0 and groups["leaf2"].uplink_gbps == (8 + 4) * 50.0
    assert "network from topology-conf topology.conf" in fab.spec.description
    for fmt, name in (("topology-tree", "again.conf"), ("topology-yaml", "again.yaml")):
        again = tmp_path / name  # the export imports to the same tree, and assembles to the same fabric
        assert main(["topology", "export", str(out), "--format", fmt, "-o", str(again)]) == 0
        assert tree_of(build(import_csv(again))) == tree_of(fab)
        spec, notes = join_network(assemble([hosts])[0], again)
        assert spec.network == fab.spec.network and spec.nvlink_domains == fab.spec.nvlink_domains


def test_ibnetdiscover_rail_groups_on_discovered_hosts(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for i, clique in ((1, 5), (2, 5), (3, 6), (4, 6)):
        _write(hosts, f"node{i:02d}", tray(clique))
    spec, notes = join_network(assemble([hosts])[0], RAILS)
    assert notes == []
    groups = {g.name: g for g in spec.network.groups}
    assert (groups["leaf01"].hosts, groups["leaf01"].switches) == ("node[01-02]", 2)
    # the dump's cables win over the discovered NICs (2 hosts x 8 x 50 GB/s would be 400 per switch):
    # each switch of the rail group has 2 NDR cables up, 2 x 400 Gb/s = 100 GB/s
    assert groups["leaf01"].uplink_gbps == 2 * 400 / 8
    assert "(uplinks from the link rates of its cables)" in spec.description
    assert groups["spine01"].children == ["leaf01", "leaf02"]
    assert list(spec.host_types) == ["gb200-x4"] and len(build(spec).hosts) == 4


def test_ibnetdiscover_without_link_rates_sums_the_discovered_nics(tmp_path):
    """Where the dump gives no rate the cables are unknown: uplinks non-blocking from the discovered
    hosts' NICs, as before link rates were read."""
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for i, clique in ((1, 5), (2, 5), (3, 6), (4, 6)):
        _write(hosts, f"node{i:02d}", tray(clique))
    plain = tmp_path / "ib.txt"
    plain.write_text(RAILS.read_text().replace(" 4xNDR", ""))
    spec, _ = join_network(assemble([hosts])[0], plain)
    ht = spec.host_types["gb200-x4"]
    assert {g.name: g for g in spec.network.groups}["leaf01"].uplink_gbps == 2 * ht.nics * ht.nic_gbps / 2
    assert "(uplinks assumed non-blocking)" in spec.description


def test_a_domain_over_several_leaves_is_split_with_a_warning(tmp_path, capsys):
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for i in range(18):  # one NVL72 rack on the three leaf switches of Slurm's topology.conf example
        _write(hosts, f"dev{i}", tray(3))
    (tmp_path / "topology.conf").write_text(SLURM_DOC)
    out = tmp_path / "f.yaml"
    assert main(["topology", "assemble", str(hosts), "--network", str(tmp_path / "topology.conf"),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"warning: NVLink domain {CLUSTER}.3: its hosts are under 3 leaf switch groups (dev[0-5] on s0; "
            "dev[6-11] on s1; dev[12-17] on s2); an NVL72 rack's trays normally share one") in err
    assert main(["topology", "validate", str(out)]) == 0
    spec, _ = parse_spec(out.read_text())
    assert [(d.name, d.hosts, d.nvswitches) for d in spec.nvlink_domains] == [
        (f"{CLUSTER}.3-s0", "dev[0-5]", 18), (f"{CLUSTER}.3-s1", "dev[6-11]", 18),
        (f"{CLUSTER}.3-s2", "dev[12-17]", 18)]


def test_hosts_not_discovered_are_an_error_or_left_out(tmp_path, capsys):
    hosts = racks(tmp_path)
    conf = tmp_path / "topology.conf"
    conf.write_text(RACKS.replace("gb-b[01-02]", "gb-b[01-09]") + "SwitchName=far Nodes=gone[1-3]\n"
                    "SwitchName=spine2 Switches=far\n")
    assert main(["topology", "assemble", str(hosts), "--network", str(conf)]) == 3
    err = capsys.readouterr().err
    assert f"error: 10 hosts (gb-b[03-07] and 5 more) of {conf} are not discovered" in err
    assert "--allow-missing to leave them out" in err and "Traceback" not in err
    out = tmp_path / "f.yaml"
    assert main(["topology", "assemble", str(hosts), "--network", str(conf), "--allow-missing",
                 "-o", str(out)]) == 0
    assert "note: --allow-missing: 10 hosts (gb-b[03-07] and 5 more) of " in capsys.readouterr().err
    assert main(["topology", "validate", str(out)]) == 0
    spec, _ = parse_spec(out.read_text())
    assert [g.name for g in spec.network.groups] == ["leaf1", "leaf2", "spine", "root"]
    assert {g.name: g.children for g in spec.network.groups}["root"] == ["spine"]
    assert {g.name: g.hosts for g in spec.network.groups}["leaf2"] == "gb-b[01-02]"
    assert "10 hosts of it not discovered, left out" in spec.description
    assert main(["topology", "assemble", str(hosts), "--allow-missing"]) == 2  # no network: a usage error


@pytest.mark.parametrize("conf, message", [
    (RACKS.replace("gb-a[01-18]", "gb-a[01-17]"),
     "1 host (gb-a18) discovered but not in {conf}"),
    (RACKS.replace("gb-b[01-02]", "GB-B[01-02]"),
     "2 hosts (gb-b[01-02]) discovered but not in {conf}: 'gb-b01' is 'GB-B01' there (Slurm compares host "
     "names exactly: case, domain and zero padding included); it lacks 2 hosts (GB-B[01-02]) of the file"),
    (RACKS.replace("gb-b[01-02]", "gb-b01.cluster,gb-b02.cluster"),
     "'gb-b01' is 'gb-b01.cluster' there"),
    (RACKS.replace("gb-b[01-02]", "gb-b[1-2]"), "'gb-b01' is 'gb-b1' there"),
])
def test_host_names_are_compared_as_slurm_does(tmp_path, conf, message):
    with pytest.raises(ConfigError) as err:
        joined(tmp_path, racks(tmp_path), conf)
    assert message.format(conf=tmp_path / "topology.conf") in err.value.message
    assert "NodeName" in err.value.hint


def test_bad_network_files_are_one_line(tmp_path, capsys):
    hosts = racks(tmp_path)
    csv = tmp_path / "nodes.csv"
    csv.write_text("ip,DSW,PSW,ASW\n")
    for network, said in ((tmp_path / "none.conf", "--network file '{}' does not exist"),
                          (csv, "--network {}: a lingjun file, not a network (Slurm topology.conf"),
                          (hosts / "gb-a01.yaml", "--network {}: not a network")):
        assert main(["topology", "assemble", str(hosts), "--network", str(network)]) == 3
        err = capsys.readouterr().err
        assert f"error: {said.format(network)}" in err and "fix: give /etc/slurm/topology.conf" in err
    fragment = hosts / "gb-b01.yaml"
    fragment.write_text(fragment.read_text().replace("nics: 8", "nics: 0"))
    with pytest.raises(ConfigError, match=r"^1 host \(gb-b01\) on a leaf switch of .* has no NIC in disc"):
        joined(tmp_path, hosts, RACKS)


def test_near_misses_are_named_only_where_near():
    from fabric_hpc.topology.assemble_network import _near

    assert _near(["n1.rack2"], ["n1.rack3"]) == "" and _near(["a1"], ["b1"]) == ""
    assert _near(["dgx01.lab"], ["dgx01"]).startswith(": 'dgx01.lab' is 'dgx01' there")
    assert _near(["gpu001"], ["GPU1", "gpu1"]).startswith(": 'gpu001' is 'gpu1' there")
