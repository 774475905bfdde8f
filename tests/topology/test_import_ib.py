"""Importing ibnetdiscover output: fixtures in fixtures/ibnetdiscover/ (README.md there: the
ibnetdiscover(8) man page example, and a rail-optimised fabric in that format), fabrics written in
that format from the shipped fabrics, and one clear line for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build, open_fabric
from fabric_hpc.topology.importers import detect_kind, import_csv
from fabric_hpc.topology.spec import switch_names

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
    assert groups["leaf01"].uplink_gbps == 2 * 8 * 50 / 2  # each of its 2 switches: non-blocking
    assert len(build(spec).hosts) == 4  # the SHArP aggregation node CA is no host


def test_man_page_example_names_no_hosts():
    with pytest.raises(ConfigError, match="manpage-example.txt:.*linked but both 0 hops from the leaf"):
        import_csv(FIXTURES / "manpage-example.txt")


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
     "host 'node0[13]' is on leaf switches S-1070fd0300a000.0 .line .*, which serve different hosts"),
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
