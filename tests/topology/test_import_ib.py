"""Importing ibnetdiscover output: fixtures in fixtures/ibnetdiscover/ (README.md there: the
ibnetdiscover(8) man page example, and a rail-optimised fabric in that format), fabrics written in
that format from the shipped fabrics, and one clear line for each bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology import build, open_fabric
from fabric_hpc.topology.import_ib import import_ibnetdiscover
from fabric_hpc.topology.importers import detect_kind, import_csv
from fabric_hpc.topology.spec_check import switch_names

FIXTURES = Path(__file__).parent / "fixtures" / "ibnetdiscover"


def test_rail_groups_from_a_dump():
    path = FIXTURES / "rails-2x2.txt"
    assert detect_kind(path) == "ibnetdiscover"
    spec = import_csv(path, host_type="hgx-h800")
    groups = {g.name: g for g in spec.network.groups}
    assert spec.network.levels == ["leaf", "spine"]
    assert (groups["leaf01"].hosts, groups["leaf01"].switches) == ("node[01-02]", 2)
    assert (groups["leaf02"].hosts, groups["leaf02"].switches) == ("node[03-04]", 2)
    assert (groups["spine01"].children, groups["spine01"].switches) == (["leaf01", "leaf02"], 2)
    assert groups["leaf01"].uplink_gbps == 2 * 400 / 8  # each switch: 2 NDR cables up (to spines 1, 2)
    assert len(build(spec).hosts) == 4  # the SHArP aggregation node CA is no host


def test_man_page_example_names_no_hosts():
    with pytest.raises(ConfigError, match="manpage-example.txt: no CA names a host: 4 CAs described by "
                                          "model or 'localhost' .4 'MT23108 InfiniHost Mellanox "
                                          "Technologies'."
                       ) as exc:
        import_csv(FIXTURES / "manpage-example.txt")
    assert "--node-name-map FILE" in exc.value.hint


def dump_of(fabric) -> str:
    """The fabric as ibnetdiscover would print it: NIC i of a host on switch i mod n of its leaf
    group, every switch of a group cabled to every switch of its parent group."""
    guid, blocks, links = {}, {}, []
    for g in fabric.spec.network.groups:
        for sw in switch_names(g.name, g.switches):
            guid[sw] = f"S-{len(guid) + 1:016x}"
            blocks[guid[sw]] = [f'Switch\t64 "{guid[sw]}"\t\t# "MF0;{sw}:MQM9700/U1" enhanced port 0 lid 1']
    for g in fabric.spec.network.groups:
        mine = switch_names(g.name, g.switches)
        for child in g.children:
            c = fabric.spec.network.groups[[x.name for x in fabric.spec.network.groups].index(child)]
            links += [(guid[a], guid[b], "") for a in switch_names(c.name, c.switches) for b in mine]
        for host in (fabric.groups[g.name].hosts if g.hosts else ()):
            for i in range(fabric.spec.host_types[fabric.host_type_of[host]].nics):
                ca = f"H-{0x100000 + len(blocks):016x}"
                blocks[ca] = [f'Ca\t1 "{ca}"\t\t# "{host} mlx5_{i}"']
                links.append((ca, guid[mine[i % len(mine)]], f' # "{host} mlx5_{i}"'))
    for n, (a, b, desc) in enumerate(links, start=1):
        blocks[a].append(f'[{n}]\t"{b}"[{n}]\t\t# lid 2 4xNDR')
        blocks[b].append(f'[{n}]\t"{a}"[{n}]{desc} lid 2 4xNDR')
    return "\n\n".join("\n".join(lines) for lines in blocks.values()) + "\n"


@pytest.mark.parametrize("name", ["fat-tree-k8", "dgx-h100-superpod-4su", "leaf-spine-16"])
def test_dump_of_a_shipped_fabric_gives_its_groups(name, tmp_path):
    original = open_fabric(name)
    path = tmp_path / "ib.txt"
    path.write_text(dump_of(original))
    imported = build(import_csv(path))
    assert set(imported.hosts) == set(original.hosts)
    assert shape(imported) == shape(original)


def shape(fabric) -> tuple[list, list]:
    """(hosts and switch count of each leaf group, (level number, switch count) of each group)."""
    return (sorted((sorted(g.hosts), len(g.switches)) for g in fabric.groups.values() if g.hosts),
            sorted((fabric.levels.index(g.level), len(g.switches)) for g in fabric.groups.values()))


RAILS = (FIXTURES / "rails-2x2.txt").read_text()


@pytest.mark.parametrize("old, new, message", [
    ('"node02 mlx5_1"', '"node01 mlx5_1"', None),  # same host twice on one switch: fine
    ('Ca\t1 "H-946dae0300d10040"\t\t# "node02 mlx5_1"', 'Ca\t1 "H-946dae0300d10040"\t\t# "node03 mlx5_1"',
     r"ib\.txt:106: CAs H-946dae0300d10040 .line 92. and H-946dae0300d10060 are both described "
     r"'node03 mlx5_1'"),
    ('[33]\t"S-1070fd0300c00010"[1]', '[33]\t"S-1070fd0300a00010"[1]', "is linked to itself"),
    ('[33]\t"S-1070fd0300c00010"[1]', '[33]\t"S-1070fd0300b00010"[1]', "linked but both 0 hops"),
    ('[33]\t"S-1070fd0300c00010"[1]', '[33]\t"S-00000000000000ff"[1]', "a node with no block of its own"),
    ('enhanced port 0 lid 10 lmc 0', 'enhanced port 0 lid 10 lmc 0\nbogus line',
     r"ib\.txt:11: cannot read 'bogus"),
    ('# "node01 mlx5_0"\n', '# "node/01 mlx5_0"\n', "does not start with a host name"),
])
def test_bad_dump_is_one_clear_line(tmp_path, old, new, message):
    assert old in RAILS
    path = tmp_path / "ib.txt"
    path.write_text(RAILS.replace(old, new, 1 if message != "does not start with a host name" else -1))
    if message is None:
        assert len(build(import_csv(path)).hosts) == 4
        return
    with pytest.raises(ConfigError, match=message) as exc:
        import_csv(path)
    assert "\n" not in exc.value.message and exc.value.hint


def test_cli_imports_a_dump(tmp_path, capsys):
    out = tmp_path / "ib.yaml"
    assert main(["topology", "import", str(FIXTURES / "rails-2x2.txt"), "--host-type", "gb200-tray",
                 "-o", str(out)]) == 0
    assert main(["topology", "validate", str(out)]) == 0
    assert main(["topology", "import", str(FIXTURES / "rails-2x2.txt"), "--host-map", "x.csv"]) == 3
    assert "--host-map applies to lingjun files; " in capsys.readouterr().err


# -- real dumps (fixtures/ibnetdiscover/README.md: sources and licences) -------------------------
def test_real_dgx_superpod_dump_skips_unnamed_cas_and_groups_rails():
    """NVIDIA topograph's DGX H100 dump: CAs still described by the kernel default ('MT4129
    ConnectX7   Mellanox Technologies') or as 'localhost' are no host; leaves whose host sets differ
    (a host down on one rail, a UFM server on two of four rails) still form one rail group."""
    spec = import_csv(FIXTURES / "topograph-dgx-h100-su1-su8.txt")
    fabric = build(spec)
    groups = {g.name: g for g in spec.network.groups}
    assert spec.network.levels == ["leaf", "spine"]
    assert [(g.switches, len(fabric.groups[g.name].hosts)) for g in spec.network.groups if g.hosts] == [
        (4, 16), (3, 10)]  # SU 8 (14 named DGX, ubuntu, B11-P1-CUFM-02), SU 1 (10 named DGX; no leaf 03-01)
    assert "MT4129" not in fabric.hosts and "localhost" not in fabric.hosts
    assert {"ubuntu", "B11-P1-CUFM-02", "b08-p1-dgx-08-c01", "a05-p1-dgx-01-c18"} <= set(fabric.hosts)
    assert groups["spine01"].switches == 9
    assert "CAs naming no host left out: 36 (33 'MT4129 ConnectX7 Mellanox Technologies'" in spec.description


def test_real_qdr_dump_with_a_node_name_map(tmp_path):
    """PSMN's X5 cluster (QDR, Voltaire and Mellanox switches): every CA has the kernel default
    description, so without a map it is one line naming the fix; with the site's GUID map (converted
    to ibnetdiscover's --node-name-map format) the hosts are those of the site's own topology.conf."""
    with pytest.raises(ConfigError, match=r"no CA names a host: 89 CAs .*'MT25408 ConnectX Mellanox") as exc:
        import_csv(FIXTURES / "x5-psmn-qdr.txt")
    assert "--node-name-map" in exc.value.hint
    spec = import_csv(FIXTURES / "x5-psmn-qdr.txt", node_name_map=FIXTURES / "x5-psmn.node-name-map")
    fabric = build(spec)
    assert {"sl390lin1", "r422node103", "r510gluster4", "x5570comp2", "r815lin114"} <= set(fabric.hosts)
    assert len(fabric.hosts) == 86  # the map's 86 GUIDs
    assert "CAs naming no host left out: 3 (3 'MT25408 ConnectX Mellanox Technologies')" in spec.description


def test_grouped_dump_with_external_ports(tmp_path):
    """`ibnetdiscover -g` (chassis grouping): port lines carry '[ext N]' and the blocks chassis
    headings, '# Chassis N' comments and Hostname: lines."""
    spec = import_csv(FIXTURES / "grouped-chassis.txt")
    assert [(g.name, g.hosts, g.switches) for g in spec.network.groups] == [
        ("leaf01", "node[01-02]", 1), ("leaf02", "node[03-04]", 1), ("spine01", None, 2)]


def test_cli_node_name_map(tmp_path, capsys):
    out = tmp_path / "x5.yaml"
    assert main(["topology", "import", str(FIXTURES / "x5-psmn-qdr.txt"), "--node-name-map",
                 str(FIXTURES / "x5-psmn.node-name-map"), "-o", str(out)]) == 0
    assert "r510gluster" in out.read_text()
    assert main(["topology", "import", str(FIXTURES / "rails-2x2.txt"), "--node-name-map", str(out)]) == 3
    assert re.search(r"x5.yaml:\d+: cannot read 'fabric: 1'", capsys.readouterr().err)


@pytest.mark.parametrize("text, message", [
    ('0x1 "a"\nnonsense\n', r"map:2: cannot read 'nonsense'"),
    ('0x1 "a"\n0x01 "b"\n', r"map:2: GUID 0x01 is mapped twice"),
    ('0x1 ""\n', r"map:1: empty name"),
])
def test_bad_node_name_map_is_one_clear_line(tmp_path, text, message):
    (tmp_path / "map").write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        import_csv(FIXTURES / "rails-2x2.txt", node_name_map=tmp_path / "map")
    assert "\n" not in exc.value.message and exc.value.hint


def test_a_host_on_two_groups_joins_neither(tmp_path):
    """A host cabled to leaf switches of two groups (node03: 2 ports on b0/b1, 1 on a1) joins neither: it
    sits in the group of most of its ports, said in the description. It made them one group of 4
    switches, node03-04 modelled on leaf-a0/a1."""
    path = tmp_path / "ib.txt"
    path.write_text(RAILS.replace('# "node02 mlx5_1"\n', '# "node03 mlx5_2"\n'))
    spec = import_csv(path)
    assert [(g.hosts, g.switches) for g in spec.network.groups if g.hosts] == [("node[01-02]", 2),
                                                                              ("node[03-04]", 2)]
    assert "node03 in leaf02 (1 port on leaf01)" in spec.description


def test_two_machines_of_one_name_are_refused(tmp_path):
    path = tmp_path / "ib.txt"
    path.write_text(RAILS.replace('"node02 mlx5_0"', '"node01 mlx5_0"'))
    with pytest.raises(ConfigError, match=r"CAs H-946dae0300d10010 .line \d+. and H-946dae0300d10030 are "
                                          r"both described 'node01 mlx5_0'") as exc:
        import_csv(path)
    assert "--node-name-map" in exc.value.hint


@pytest.mark.parametrize("text, option", [
    ("SW     2 19 0x0008f10400411f56 4x QDR - CA     3  1 0x0002c90300001d91 ( 'ISR9024 Voltaire' - "
     "'node01 HCA-1' )\n", "-p"),  # ibnetdiscover -p, the form slurmibtopology.sh reads
    ('Switch\t : 0x0008f10400411f56 ports 24 devid 0x5a06 vendid 0x8f1 "ISR9024 Voltaire"\n', "-l/-H"),
])
def test_other_ibnetdiscover_forms_name_the_plain_one(tmp_path, text, option):
    path = tmp_path / "ib.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"ib.txt:1: this is the output of ibnetdiscover {option}") as exc:
        detect_kind(path)
    assert "plain `ibnetdiscover`" in exc.value.hint


def test_a_dump_from_an_unlinked_host_names_the_fix():
    """topograph's example-bad.out: ibnetdiscover on a host whose port reaches no switch."""
    with pytest.raises(ConfigError, match=r"lone-ca.txt: no Switch blocks .only 1 CA.: ibnetdiscover reached "
                                          "no switch") as exc:
        import_csv(FIXTURES / "topograph-lone-ca.txt")
    assert "Active (ibstat)" in exc.value.hint


def test_missing_dump_or_map_names_the_right_fix(tmp_path):
    with pytest.raises(NotFoundError, match="node name map .*nope' does not exist") as exc:
        import_csv(FIXTURES / "rails-2x2.txt", node_name_map=tmp_path / "nope")
    assert "0x<node GUID>" in exc.value.hint and "data/topologies" not in exc.value.hint
    with pytest.raises(NotFoundError, match="ibnetdiscover file .*nope' does not exist") as exc:
        import_ibnetdiscover(tmp_path / "nope")
    assert "ibnetdiscover > " in exc.value.hint and "data/topologies" not in exc.value.hint
