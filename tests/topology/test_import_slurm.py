"""Importing Slurm's topology.conf (topology/tree): round trip of our own export, what Slurm's parser
accepts (slurm-25.11 parse_config.c / switch_record.c), and one clear line for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import expand
from fabric_hpc.topology import build, open_fabric
from fabric_hpc.topology.export import topology_conf
from fabric_hpc.topology.import_slurm import import_topology_conf
from fabric_hpc.topology.importers import MAX_CSV_BYTES, detect_kind, import_csv
from fabric_hpc.topology.shipped import shipped_fabrics


def tree_of(fabric) -> tuple[dict[str, frozenset[str]], dict[str, str | None]]:
    """(leaf group -> its hosts, group -> parent group): what topology.conf says about a fabric."""
    leaves = {g.name: frozenset(g.hosts) for g in fabric.groups.values() if g.hosts}
    return leaves, {g.name: g.parent for g in fabric.groups.values()}


@pytest.mark.parametrize("name", sorted(shipped_fabrics()))
def test_import_of_our_export_is_the_same_tree(name, tmp_path):
    original = open_fabric(name)
    conf = tmp_path / "topology.conf"
    conf.write_text(topology_conf(original, "tree"))
    assert detect_kind(conf) == "topology-conf"
    imported = build(import_csv(conf))
    assert set(imported.hosts) == set(original.hosts)
    assert tree_of(imported) == tree_of(original)
    assert imported.levels == ["leaf", "spine", "core", "root"][:len(original.levels)]


SLURM_DOC = """\
# topology.conf from the Slurm documentation (topology.conf(5)), with Slurm's lexical rules
SwitchName=s0 Nodes=dev[0-5]
switchname=s1 nodes=dev[6-11]   # keys are case-insensitive
SwitchName=s2 Nodes="dev[12-17]" LinkSpeed=0x10k  # a uint32 as Slurm reads it (parse_value.c)
SwitchName=s4 Switches=s3 LinkSpeed=UNLIMITED
SwitchName=s3 \\
    Switches=s[0-2]
"""


def test_slurm_syntax_and_host_type(tmp_path):
    conf = tmp_path / "topology.conf"
    conf.write_text(SLURM_DOC)
    spec = import_topology_conf(conf, host_type="gb200-tray")
    fab = build(spec)
    assert len(fab.hosts) == 18 and fab.levels == ["leaf", "spine", "core"]
    assert tree_of(fab)[1] == {"s0": "s3", "s1": "s3", "s2": "s3", "s3": "s4", "s4": None}
    assert list(spec.host_types) == ["gb200-tray"]
    leaf = next(g for g in spec.network.groups if g.name == "s0")
    assert leaf.uplink_gbps == 6 * 4 * 50.0  # 6 hosts x 4 NICs x 50 GB/s: non-blocking
    own = tmp_path / "host.yaml"
    own.write_text("gpus: 4\ngpu_model: L40S\ngpu_memory_gb: 48\nsockets: 1\ncores_per_socket: 32\n"
                   "memory_gb: 512\nnvlink_gbps: 0\nnvswitches: 0\npcie_gbps: 32\nnics: 1\nnic_gbps: 25\n")
    spec = import_topology_conf(conf, host_type=str(own))
    assert spec.host_types["host"].gpu_model == "L40S"


def test_uneven_tree_and_several_tops_get_pass_through_and_root(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("SwitchName=l1 Nodes=a[1-2]\nSwitchName=l2 Nodes=a[3-4]\nSwitchName=l3 Nodes=b1\n"
                    "SwitchName=sp Switches=l[1-2]\nSwitchName=core Switches=sp,l3\n"
                    "SwitchName=other Nodes=c[1-2]\nSwitchName=spare\n")
    spec = import_topology_conf(conf)
    fab = build(spec)
    _, parent = tree_of(fab)
    assert parent["l3"] == "l3-up1" and parent["l3-up1"] == "core" and parent["core"] == "root"
    assert parent["other"] == "other-up1" and parent["other-up2"] == "root"
    assert "spare" not in parent and "empty switches left out: spare" in spec.description
    assert set(fab.hosts) == set(expand("a[1-4],b1,c[1-2]"))


@pytest.mark.parametrize("text, message", [
    ("SwitchName=s1 Nodes=n1 Foo=2\n", r"t\.conf:1: unknown key 'Foo'"),
    ("SwitchName=s1 Nodes=n1\nSwitchName=s1 Nodes=n2\n",
     r"t\.conf:2: switch 's1' is already defined on line 1"),
    ("SwitchName=s1 Nodes=n1 Switches=s2\n", "has both Nodes= and Switches="),
    ("SwitchName=s1 Switches=s1\n", "switch 's1' lists itself"),
    ("SwitchName=s1 Nodes=n1\nSwitchName=s2 Switches=s1,s9\n", "lists unknown switch 's9'"),
    ("SwitchName=l Nodes=n1\nSwitchName=a Switches=b,l\nSwitchName=b Switches=a\n",
     r"switches a, b form a loop"),
    ("SwitchName=l1 Nodes=n[1-2]\nSwitchName=l2 Nodes=n[2-3]\n",
     r"t\.conf:2: host 'n2' is on leaf switch 'l1' \(line 1\) and on 'l2'"),
    ("SwitchName=l1 Nodes=n1\nSwitchName=a Switches=l1\nSwitchName=b Switches=l1\n",
     "switch 'l1' is under 'a' .* and under 'b'"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4\n", "BlockName is a topology/block line"),
    ("SwitchName=s1 Nodes=n1 LinkSpeed=fast\n", "LinkSpeed='fast' is not a whole number"),
    ("SwitchName=s1 Nodes=n1 LinkSpeed=4294967296\n", "LinkSpeed='4294967296' is not a whole number"),
    ("SwitchName=s1 Nodes=n1 LinkSpeed=4194304k\n", "LinkSpeed='4194304k' is not a whole number"),
    ("SwitchName=s1 Nodes=n1\\#x\n", r"t\.conf:1: switch 's1': host name 'n1#x' is not a valid host name"),
    ("SwitchName=s/1 Nodes=n1\n", "switch name 's/1' is not a valid name"),
    ("SwitchName=s1 Nodes=n[1-3\n", r"t\.conf:1: switch 's1': "),
    ("SwitchName=s1 Nodes=n1 junk\n", "cannot read 'junk'"),
])
def test_bad_topology_conf_is_one_clear_line(tmp_path, text, message):
    conf = tmp_path / "t.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        import_csv(conf)
    assert "\n" not in exc.value.message and exc.value.hint


def test_cli_auto_kind_host_type_and_limits(tmp_path, capsys):
    conf = tmp_path / "topology.conf"
    conf.write_text(SLURM_DOC)
    out = tmp_path / "fab.yaml"
    assert main(["topology", "import", str(conf), "--host-type", "hgx-h800", "-o", str(out)]) == 0
    assert main(["topology", "validate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["gpus"] == 18 * 8
    assert main(["topology", "import", str(conf), "--hosts-per-leaf", "4"]) == 3
    assert "--hosts-per-leaf applies to openb and spot2026 files" in capsys.readouterr().err
    assert main(["topology", "import", str(conf), "--host-type", "nope"]) == 3
    assert "host type 'nope' is neither a built-in type nor a YAML file" in capsys.readouterr().err
    big = tmp_path / "big.conf"
    big.write_text("SwitchName=s1 Nodes=n1\n" + "#" * MAX_CSV_BYTES)
    assert main(["topology", "import", str(big)]) == 3
    assert "over the import limit" in capsys.readouterr().err
    assert not Path(tmp_path / "fab.yaml.tmp").exists()


def test_cli_kinds_are_the_importers_kinds():
    from fabric_hpc.cli.topology import IMPORT_KINDS
    from fabric_hpc.topology.importers import KINDS

    assert IMPORT_KINDS == KINDS


@pytest.mark.parametrize("name", ["leaf-spine-16", "dgx-h100-superpod-4su"])
def test_topology_yaml_tree_round_trip(name, tmp_path):
    from fabric_hpc.topology.export_yaml import topology_yaml

    original = open_fabric(name)
    path = tmp_path / "topology.yaml"
    path.write_text(topology_yaml(original, default="flat", block_size=1))
    assert detect_kind(path) == "topology-yaml"
    imported = build(import_csv(path))
    assert tree_of(imported) == tree_of(original)
    assert "Slurm topology.yaml" in imported.spec.description


SLURM_YAML_DOC = """\
---
- topology: topo1
  cluster_default: true
  tree:
    switches:
      - switch: sw_root
        children: s[1-2]
      - switch: s1
        nodes: node[01-02]
      - switch: s2
        nodes: node[03-04]
- topology: topo3
  cluster_default: false
  flat: true
"""


def test_topology_yaml_man_page_example_and_errors(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(SLURM_YAML_DOC)  # the EXAMPLE of topology.yaml(5), Slurm 25.11, less its block entry
    assert tree_of(build(import_csv(path)))[1] == {"s1": "sw_root", "s2": "sw_root", "sw_root": None}
    path.write_text(SLURM_YAML_DOC.replace("children: s[1-2]", "children: s[1-2]\n        nodes: x1"))
    with pytest.raises(ConfigError, match=r"yaml:6: switch 'sw_root' has both nodes: and children:"):
        import_csv(path)
    path.write_text(SLURM_YAML_DOC.replace("children:", "kids:"))
    with pytest.raises(ConfigError, match="switch entry 1: unknown key 'kids'"):
        import_csv(path)
    path.write_text("- topology: f\n  flat: true\n")
    with pytest.raises(ConfigError, match="no tree topology"):
        import_csv(path)


def test_host_type_from_a_fabric_file(tmp_path):
    from fabric_hpc.topology.import_slurm import host_type_of

    fabric = str(shipped_fabrics()["leaf-spine-16"])
    assert host_type_of(fabric)[0] == host_type_of(f"{fabric}:node")[0] == "node"
    with pytest.raises(ConfigError, match="no host type 'nope'; its host types: node"):
        host_type_of(f"{fabric}:nope")  # was: the only type, silently
    bad = tmp_path / "h.yaml"
    bad.write_text("- gpus\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        host_type_of(str(bad))


def test_too_many_hosts_or_switches_is_refused_early(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("".join(f"SwitchName=s{i} Nodes=h{i}x[1-2]\n" for i in range(50_001)))
    with pytest.raises(ConfigError,
                       match=r"t\.conf:50001: switch 's50000': the switches up to this line list 100,002 "
                             r"hosts \(Nodes=\); a fabric models at most 100,000"):
        import_csv(conf)  # was: "host list 'h0x[1-2],...' stands for more than 100,000 names", no line
    conf.write_text("".join(f"SwitchName=s{i}\n" for i in range(100_001)))
    with pytest.raises(ConfigError, match=r"t\.conf:100001: more than 100,000 switches"):
        import_csv(conf)
