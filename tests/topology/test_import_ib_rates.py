"""Link rates of imported ibnetdiscover dumps: each group's uplinks are its cables up (their number and
rates), each host's NIC rate its ports' (fabric_hpc.topology.ib_rates; docs/topology-sources.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology import build
from fabric_hpc.topology.ib_rates import rate_of
from fabric_hpc.topology.importers import import_csv

FIXTURES = Path(__file__).parent / "fixtures" / "ibnetdiscover"


def dump(hosts: dict[str, list[tuple[str, str]]], up: list[tuple[str, str, str]]) -> str:
    """An ibnetdiscover dump: ``hosts`` host -> (leaf switch, rate) per HCA, ``up`` (leaf, spine, rate)
    per cable; rate '' prints none. Both ends of each cable print it, as ibnetdiscover does."""
    switches = sorted({leaf for cas in hosts.values() for leaf, _ in cas} | {s for _, s, _ in up})
    guid = {sw: f"S-{i + 1:016x}" for i, sw in enumerate(switches)}
    blocks = {guid[sw]: [f'Switch\t64 "{guid[sw]}"\t\t# "MF0;{sw}:MQM9700/U1" enhanced port 0 lid 1']
              for sw in switches}
    free = dict.fromkeys(blocks, 1)
    cables = [(guid[a], guid[b], rate, "") for a, b, rate in up]
    for host, cas in hosts.items():
        for i, (leaf, rate) in enumerate(cas):
            ca = f"H-{0x100000 + len(blocks):016x}"
            blocks[ca], free[ca] = [f'Ca\t1 "{ca}"\t\t# "{host} mlx5_{i}"'], 1
            cables.append((ca, guid[leaf], rate, f"(1{ca[2:]}) "))
    for a, b, rate, portguid in cables:
        pa, pb = free[a], free[b]
        free[a], free[b] = pa + 1, pb + 1
        blocks[a].append(f'[{pa}]{portguid}\t"{b}"[{pb}]\t\t# "x" lid 2 {rate}'.rstrip())
        blocks[b].append(f'[{pb}]\t"{a}"[{pa}]{portguid}\t\t# "y" lid 3 {rate}'.rstrip())
    return "\n\n".join("\n".join(lines) for lines in blocks.values()) + "\n"


def imported(tmp_path, text: str, **options):
    path = tmp_path / "ib.txt"
    path.write_text(text)
    spec = import_csv(path, **options)
    return spec, {g.name: g for g in spec.network.groups}


@pytest.mark.parametrize("rate, gbps", [
    ("4xSDR", 8), ("4xDDR", 16), ("4xQDR", 32), ("4xFDR10", 40), ("4xFDR", 14.0625 * 4 * 64 / 66),
    ("4xEDR", 100), ("4xHDR", 200), ("4xNDR", 400), ("4xXDR", 800), ("1xSDR", 2), ("2xNDR", 200),
    ("8xNDR", 800), ("12xQDR", 96)])
def test_each_rate_gives_uplinks_and_nic_rate(tmp_path, rate, gbps):
    spec, groups = imported(tmp_path, dump({"n1": [("l1", rate)], "n2": [("l1", rate)]},
                                           [("l1", "s1", rate), ("l1", "s1", rate)]))
    assert groups["leaf01"].uplink_gbps == pytest.approx(2 * gbps / 8)
    assert spec.host_types["dgx-h100"].nic_gbps == pytest.approx(gbps / 8)
    assert "(1:1)" in spec.description
    assert rate_of(f'"S-1 4xNDR" lid 3 {rate}') == pytest.approx(gbps)


def test_a_2_to_1_oversubscribed_leaf(tmp_path):
    hosts = {f"n{i}": [("l1", "4xNDR")] for i in range(4)} | {f"m{i}": [("l2", "4xNDR")] for i in range(2)}
    spec, groups = imported(tmp_path, dump(hosts, [("l1", "s1", "4xNDR"), ("l1", "s2", "4xNDR"),
                                                   ("l2", "s1", "4xNDR"), ("l2", "s2", "4xNDR")]))
    assert groups["leaf01"].uplink_gbps == 100  # 2 x 400 Gb/s for 4 x 400 Gb/s of hosts
    assert groups["leaf02"].uplink_gbps == 100
    assert "leaf oversubscription (host ports : uplinks): leaf01 1,600:800 Gb/s (2:1), leaf02 800:800 Gb/s " \
           "(1:1)" in spec.description
    assert len(build(spec).hosts) == 6


def test_multi_cable_trunk_counts_every_cable(tmp_path):
    spec, groups = imported(tmp_path, dump({"n1": [("l1", "4xQDR")]}, [("l1", "s1", "4xQDR")] * 4))
    assert groups["leaf01"].uplink_gbps == 4 * 32 / 8


def test_mixed_rates_sum_and_hosts_of_two_rates_get_two_types(tmp_path):
    spec, groups = imported(tmp_path, dump({"n1": [("l1", "4xHDR")], "n2": [("l1", "4xNDR")]},
                                           [("l1", "s1", "4xHDR"), ("l1", "s1", "4xNDR")]))
    assert groups["leaf01"].uplink_gbps == (200 + 400) / 8
    assert {t: h.nic_gbps for t, h in spec.host_types.items()} == {"dgx-h100-200g": 25, "dgx-h100-400g": 50}
    assert {e.names: e.type for e in spec.hosts} == {"n1": "dgx-h100-200g", "n2": "dgx-h100-400g"}


def test_a_host_whose_ports_disagree_keeps_the_host_types_rate(tmp_path):
    spec, _ = imported(tmp_path, dump({"n1": [("l1", "4xNDR"), ("l1", "4xHDR")], "n2": [("l1", "4xNDR")]},
                                      [("l1", "s1", "4xNDR")]), host_type="hgx-h800")
    assert {e.names: spec.host_types[e.type].nic_gbps for e in spec.hosts} == {"n2": 50, "n1": 50}
    assert "1 host (n1) with ports of different or no rates keeps hgx-h800's nic_gbps 50" in spec.description


@pytest.mark.parametrize("missing", ["", "??NDR", "4x???", "?????", "9xNDR", "4xZZZ"])
def test_a_cable_without_a_rate_counts_at_the_lowest(tmp_path, missing):
    spec, groups = imported(tmp_path, dump({"n1": [("l1", "4xHDR")]},
                                           [("l1", "s1", "4xNDR"), ("l1", "s1", missing)]))
    assert groups["leaf01"].uplink_gbps == (400 + 200) / 8
    assert "1 switch cable without a link rate (none, ?? or unknown width/speed) counted at 200 Gb/s, the lowest " \
           "rate of the dump" in spec.description


def test_a_dump_without_rates_and_assume_nonblocking_keep_the_old_uplinks(tmp_path, capsys):
    text = dump({"n1": [("l1", "")], "n2": [("l1", "")]}, [("l1", "s1", "")])
    spec, groups = imported(tmp_path, text, host_type="hgx-h800")
    assert groups["leaf01"].uplink_gbps == 2 * 8 * 50  # non-blocking: the hosts' NICs
    assert "no port line gives a link rate (4xNDR, ...): uplinks assumed non-blocking" in spec.description
    rated = dump({"n1": [("l1", "4xNDR")], "n2": [("l1", "4xNDR")]}, [("l1", "s1", "4xNDR")])
    spec, groups = imported(tmp_path, rated, host_type="hgx-h800", assume_nonblocking=True)
    assert groups["leaf01"].uplink_gbps == 2 * 8 * 50
    assert "uplinks assumed non-blocking (--assume-nonblocking)" in spec.description
    out = tmp_path / "f.yaml"
    assert main(["topology", "import", str(tmp_path / "ib.txt"), "--assume-nonblocking", "-o", str(out)]) == 0
    assert "uplink_gbps: 100.0}" in out.read_text()  # 2 hosts x their 1 cabled port x 50 GB/s
    conf = tmp_path / "topology.conf"
    conf.write_text("SwitchName=s1 Nodes=n[1-2]\n")
    assert main(["topology", "import", str(conf), "--assume-nonblocking"]) == 3
    assert "--assume-nonblocking applies to ibnetdiscover files" in capsys.readouterr().err


def test_a_switch_with_a_cable_fewer_than_its_group_is_noted(tmp_path):
    hosts = {"n1": [("a", "4xNDR"), ("b", "4xNDR")]}
    spec, groups = imported(tmp_path, dump(hosts, [("a", "s1", "4xNDR"), ("a", "s1", "4xNDR"),
                                                   ("b", "s1", "4xNDR")]))
    assert groups["leaf01"].uplink_gbps == 3 * 400 / 8 / 2  # the group's cables, shared by its 2 switches
    assert "1 switch with fewer uplink cables than another of their group (a cable down?): " \
           "'MF0;b:MQM9700/U1' 1 of 2" in spec.description


# -- real dumps (fixtures/ibnetdiscover/README.md) -----------------------------------------------
def test_real_dgx_superpod_is_non_blocking_as_cabled():
    """topograph's DGX H100 SuperPOD: each leaf has 18 NDR cables to the 9 spines (2 each) for its 18
    HCA ports, 1:1; one leaf of each SU has a cable fewer in the dump (17 of 18)."""
    spec = import_csv(FIXTURES / "topograph-dgx-h100-su1-su8.txt")
    groups = {g.name: g for g in spec.network.groups}
    assert groups["leaf01"].uplink_gbps == (17 + 3 * 18) * 400 / 8 / 4
    assert groups["leaf02"].uplink_gbps == pytest.approx((17 + 2 * 18) * 400 / 8 / 3)
    assert "leaf01 28,800:28,400 Gb/s (1.01:1), leaf02 21,600:21,200 Gb/s (1.02:1)" in spec.description
    assert "'MF0;B09-P1-IBLEAF-01-08:MQM9701/U1' 17 of 18" in spec.description
    assert spec.host_types["dgx-h100"].nic_gbps == 50  # 4xNDR
    assert spec.host_types["dgx-h100"].nics == 4  # the cabled HCA ports of most hosts (test_import_ib_nics)


def test_real_qdr_ddr_cluster_rates():
    """PSMN's X5: 36-port QDR leaves with 24 hosts and 12 cables up (2:1), DDR HCAs on some."""
    spec = import_csv(FIXTURES / "x5-psmn-qdr.txt", node_name_map=FIXTURES / "x5-psmn.node-name-map")
    groups = {g.name: g for g in spec.network.groups}
    assert [groups[f"leaf0{i}"].uplink_gbps for i in range(1, 7)] == [48, 48, 48, 48, 48, 16]
    assert "leaf02 768:384 Gb/s (2:1)" in spec.description
    assert {t: h.nic_gbps for t, h in spec.host_types.items()} == {"dgx-h100-16g": 2, "dgx-h100-32g": 4}
