"""Every validation rule of the fabric file format: the error names file, line and the fix."""

from __future__ import annotations

import re

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology import load_fabric, parse_spec


def _error(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_fabric(path)
    return str(info.value)


def test_valid_file_loads(superpod_yaml):
    path, _ = superpod_yaml
    fab = load_fabric(path)
    assert len(fab.hosts) == 64 and len(fab.gpus) == 512


@pytest.mark.parametrize("old, new, expect", [
    # unknown keys, with the list of valid keys
    ("    nics: 8", "    nics: 8\n    nicz: 3", r"edited\.yaml:\d+: unknown key 'nicz'.*valid keys: .*nic_gbps"),
    ("levels: [leaf, spine]", "levels: [leaf, spine]\n  extra: 1", r"unknown key 'extra' at network.extra"),
    # missing fields
    ("    gpus: 8\n", "", r"missing required field host_types.dgx-h100.gpus"),
    ("name: dgx-h100-superpod-2su\n", "", r"missing required field name"),
    # impossible values
    ("switches: 16", "switches: -1", r"edited\.yaml:\d+: network.groups.2.switches: .*greater than or equal to 1"),
    ("    gpus: 8", "    gpus: many", r"host_types.dgx-h100.gpus: .*integer"),
    ("fabric: 1", "fabric: 2", r"fabric: Input should be 1"),
    ("    nic_gbps: 50.0", "    nic_gbps: 0.0", r"NICs declared but nic_gbps is 0"),
    ("    nvlink_gbps: 900.0", "    nvlink_gbps: 0.0", r"NVSwitches declared but nvlink_gbps is 0"),
    ("    features:", "    gpu_numa: [0, 0, 0]\n    features:", r"gpu_numa: has 3 entries for 8 GPUs"),
    ("    features:", "    gpu_numa: [0, 0, 0, 0, 1, 1, 1, 9]\n    features:", r"socket numbers must be in 0..1"),
    # dangling links and names
    ("type: dgx-h100}", "type: dgx-h200}", r"unknown host type 'dgx-h200' \(defined: dgx-h100\)"),
    ("hosts: 'su02-h[01-32]'", "hosts: 'su02-h[01-33]'", r"1 unknown host\(s\) \(dangling link\): su02-h33"),
    ("children: [su01-leaf, su02-leaf]", "children: [su01-leaf, su09-leaf]", r"unknown group 'su09-leaf'"),
    ("level: spine", "level: spline", r"unknown level 'spline' \(levels: leaf, spine\)"),
    # duplicates
    ("- {names: 'su02-h[01-32]'", "- {names: 'su01-h[01-32]'",
     r"32 duplicate host names su01-h\[01-32\] \(already in hosts entry 0\)"),
    ("name: su02-leaf", "name: su01-leaf", r"duplicate group name 'su01-leaf'"),
    ("hosts: 'su02-h[01-32]'", "hosts: 'su01-h[01-32]'",
     r"32 hosts are already under group 'su01-leaf': su01-h\[01-32\]"),
    # structure
    ("hosts: 'su02-h[01-32]'", "hosts: 'su02-h[01-16]'", r"16 host\(s\) are under no 'leaf' group \(not connected\): su02-h\[17-32\]"),
    ("children: [su01-leaf, su02-leaf]", "children: [su01-leaf]", r"groups have no parent"),
    ("levels: [leaf, spine]", "levels: [leaf, leaf]", r"level names must be unique"),
    ("uplink_gbps: 1600.0}", "}", r"has a parent \('spine'\) but no uplink_gbps"),
    ("hosts: 'su01-h[01-32]', uplink", "hosts: 'su01-h[01-3', uplink", r"'\[' without '\]'"),
    # names that would end or comment out a line of the Slurm config files exported from the fabric
    ("- {names: 'su02-h[01-32]'", "- {names: 'h#x=y[01-32]'", r"host name 'h#x=y01' is not a valid host name"),
    ("- {names: 'su02-h[01-32]'", "- {names: '../../etc[01-32]'", r"host name '../../etc01' is not a valid"),
    ("name: su02-leaf", "name: 'su02 leaf'", r"network.groups.1.name: String should match pattern"),
    ("features: [h100, nvlink, ib]", "features: [h100, 'nv link']", r"features.1: String should match pattern"),
    # names Slurm would read back as other names (a number past 2^64 - 2: strtoul saturates)
    ("- {names: 'su02-h[01-32]'", "- {names: 'su02-h[01-31],big18446744073709551616'",
     r"host name 'big18446744073709551616' ends in a number past 2\^64 - 2"),
    ("name: su02-leaf", "name: sw18446744073709551616", r"network.groups.1.name: group name 'sw18446744073709551616' "
                                                          r"ends in a number past 2\^64 - 2"),
])
def test_rule(superpod_yaml, old, new, expect):
    _, edit = superpod_yaml
    message = _error(edit(old, new))
    assert re.search(expect, message), message
    assert "fix:" in message


def test_error_names_the_line(superpod_yaml):
    _, edit = superpod_yaml
    path = edit("    nics: 8", "    nics: 8\n    nicz: 3")
    line = next(i for i, text in enumerate(open(path), 1) if "nicz" in text)
    assert f"edited.yaml:{line}:" in _error(path)


def test_several_problems_reported_together(superpod_yaml):
    _, edit = superpod_yaml
    text = _error(edit("switches: 16", "switches: -1\n    bogus: 1"))
    assert "unknown key 'bogus'" in text and "greater than or equal to 1" in text


def test_missing_file():
    with pytest.raises(NotFoundError, match="does not exist"):
        load_fabric("/nonexistent/fabric.yaml")


@pytest.mark.parametrize("text, expect", [
    ("fabric: 1\nname: a\nname: b\n", r"line 3: duplicate key 'name' \(first at line 2\)"),
    ("fabric: 1\n  name: [x\n", r"<string>:2: not valid YAML"),
    ("- just\n- a list\n", r"expected a mapping"),
    ("fabric: true\nname: a\n", r"the format is the number 1 \(fabric: 1\), not true/false"),
])
def test_malformed_yaml(text, expect):
    with pytest.raises(ConfigError, match=expect):
        parse_spec(text)


def test_multi_host_nvlink_domain_rules():
    from fabric_hpc.topology import dump_spec, generators

    text = dump_spec(generators.nvl72(2))
    with pytest.raises(ConfigError, match="already in 'r001'"):
        parse_and_check(text.replace("hosts: 'r002-h[01-18]', gbps", "hosts: 'r001-h[01-18]', gbps"))
    with pytest.raises(ConfigError, match=r"18 unknown host\(s\) \(dangling link\): r009-h\[01-18\]"):
        parse_and_check(text.replace("hosts: 'r002-h[01-18]', gbps", "hosts: 'r009-h[01-18]', gbps"))
    with pytest.raises(ConfigError, match="declares its own NVSwitches"):
        parse_and_check(text.replace("    nvswitches: 0", "    nvswitches: 2\n").replace(
            "    nvlink_gbps: 0.0", "    nvlink_gbps: 100.0"))


def parse_and_check(text: str):
    from fabric_hpc.topology.model import Fabric

    spec, lines = parse_spec(text)
    return Fabric(spec)


def _refusal(host: str, hosts: str, leaf: str) -> str:
    """check_spec's error for one host type, one host list and a one-level network of ``leaf``."""
    from fabric_hpc.topology.spec_check import check_spec

    text = (f"fabric: 1\nname: x\nhost_types:\n  t: {{{host}, gpu_model: X, gpu_memory_gb: 1, cores_per_socket: 1, "
            f"memory_gb: 1, nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 1, nic_gbps: 1}}\nhosts:\n"
            f"  - {{names: '{hosts}', type: t}}\nnetwork:\n  levels: [leaf]\n  groups:\n    - {{{leaf}}}\n")
    with pytest.raises(ConfigError) as info:
        check_spec(parse_spec(text)[0], source="x.yaml")
    return info.value.message


def test_a_short_file_cannot_ask_for_a_huge_graph():
    """A few hundred bytes asked for 100,000 hosts of 1,024 GPUs: refused by size, before anything
    is built, with one line (not one "dangling link" line per host)."""
    message = _refusal("gpus: 1024, sockets: 64, nics: 64", "a[1-100000]",
                       "name: l, level: leaf, switches: 4096, hosts: 'a[1-100000]'")
    assert "at most 131,072 GPUs" in message and message.count("\n") == 0


def test_a_long_list_of_problems_is_cut_short():
    from fabric_hpc.validation import MAX_PROBLEMS

    leaves = "}\n    - {".join(f"name: l{i}, level: leaf, switches: 1, hosts: 'b{i}'" for i in range(30))
    lines = _refusal("gpus: 1, sockets: 1, nics: 1", "a[1-9]", leaves).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and re.fullmatch(r"\.\.\. and \d+ more", lines[-1])


def test_a_long_list_of_schema_problems_is_cut_short():
    """30 host types of 11 wrong fields each printed 330 lines: the schema check lists as many
    problems as the later checks do, then how many more."""
    from fabric_hpc.validation import MAX_PROBLEMS

    bad = ("{gpus: x, gpu_model: X, gpu_memory_gb: x, sockets: x, cores_per_socket: x, memory_gb: x, "
           "nvlink_gbps: x, nvswitches: x, pcie_gbps: x, nics: x, nic_gbps: x}")
    text = ("fabric: 1\nname: x\nhost_types:\n" + "".join(f"  t{i}: {bad}\n" for i in range(30))
            + "hosts:\n  - {names: a1, type: t0}\n")
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    lines = info.value.message.splitlines()
    assert len(lines) == MAX_PROBLEMS + 1, lines
    assert lines[0].startswith("<string>:4: host_types.t0.gpus:")
    assert lines[-1] == f"... and {30 * 10 - MAX_PROBLEMS} more"
    assert info.value.hint and "docs/topology.md" in info.value.hint


@pytest.mark.parametrize("groups, needle", [
    ("    - {name: l1, level: leaf, switches: 8, hosts: 'a[1-2]', uplink_gbps: 800}\n"
     "    - {name: l1-0, level: leaf, switches: 1, hosts: 'a[3-4]', uplink_gbps: 800}\n"
     "    - {name: sp, level: spine, switches: 4, children: [l1, l1-0]}\n", "of a switch of group 'l1'"),
    ("    - {name: a1, level: leaf, switches: 1, hosts: 'a[1-2]', uplink_gbps: 800}\n"
     "    - {name: l2, level: leaf, switches: 8, hosts: 'a[3-4]', uplink_gbps: 800}\n"
     "    - {name: sp, level: spine, switches: 4, children: [a1, l2]}\n", "of host 'a1'"),
])
def test_switch_names_are_unique_in_the_graph(groups, needle):
    """Two vertices with one name merged: distances of 1 hop across leaves, a host lost, an IndexError."""
    from fabric_hpc.topology.spec_check import check_spec

    text = ("fabric: 1\nname: x\nhost_types:\n  t: {gpus: 8, gpu_model: X, gpu_memory_gb: 1, sockets: 2, "
            "cores_per_socket: 8, memory_gb: 1, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}\n"
            "hosts:\n  - {names: 'a[1-4]', type: t}\nnetwork:\n  levels: [leaf, spine]\n  groups:\n" + groups)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        check_spec(parse_spec(text)[0], source="x.yaml")


@pytest.mark.parametrize("extra, needle", [
    ("nvlink_domains:\n  - {name: d1, hosts: 'a[1,3]', gbps: 1800, nvswitches: 18}\n"
     "  - {name: d2, hosts: 'a[2,4]', gbps: 1800, nvswitches: 18}\n", "NVLink domain 'd1' spans 2 leaf groups"),
    ("", "rack 'r1' spans 2 leaf groups"),
])
def test_domains_must_nest(extra, needle):
    """A rack or NVLink domain split over two leaf groups passed validation, then every solver broke
    its own `within=leaf` constraint."""
    from fabric_hpc.topology.spec_check import check_spec

    nvs = 0 if extra else 4
    text = ("fabric: 1\nname: x\nhost_types:\n  t: {gpus: 8, gpu_model: X, gpu_memory_gb: 1, sockets: 2, "
            f"cores_per_socket: 8, memory_gb: 1, nvlink_gbps: 900, nvswitches: {nvs}, pcie_gbps: 64, nics: 8, "
            "nic_gbps: 50}\nhosts:\n" + ("  - {names: 'a[1-4]', type: t}\n" if extra else
                                         "  - {names: 'a[1,3]', type: t, rack: r1}\n  - {names: 'a[2,4]', type: t, rack: r2}\n")
            + extra + "network:\n  levels: [leaf, spine]\n  groups:\n"
            "    - {name: l1, level: leaf, switches: 8, hosts: 'a[1-2]', uplink_gbps: 800}\n"
            "    - {name: l2, level: leaf, switches: 8, hosts: 'a[3-4]', uplink_gbps: 800}\n"
            "    - {name: sp, level: spine, switches: 4, children: [l1, l2]}\n")
    with pytest.raises(ConfigError, match=re.escape(needle)):
        check_spec(parse_spec(text)[0], source="x.yaml")


def test_checks_run_in_stages(tmp_path):
    """docs/topology.md: the first stage with problems ends the check (schema, then hosts and host
    types, then NVLink domains and the network); fixing one batch shows the next."""
    from fabric_hpc.topology import dump_spec, generators

    text = dump_spec(generators.superpod(2))
    edits = {"schema": ("switches: 16", "switches: -1"),
             "host type": ("    nic_gbps: 50.0", "    nic_gbps: 0.0"),
             "network": ("children: [su01-leaf, su02-leaf]", "children: [su01-leaf, su09-leaf]")}
    needles = {"schema": "greater than or equal to 1", "host type": "NICs declared but nic_gbps is 0",
               "network": "unknown group 'su09-leaf'"}
    path = tmp_path / "staged.yaml"
    for stage in list(edits):  # a problem in each stage; fix the batch shown and run again
        edited = text
        for old, new in edits.values():
            edited = edited.replace(old, new, 1)
        path.write_text(edited)
        message = _error(str(path))
        assert [s for s, needle in needles.items() if needle in message] == [stage], message
        del edits[stage]


_HT = r"host_types\.dgx-h100\."


@pytest.mark.parametrize("old, new, expect", [
    ("    memory_gb: 2048.0", "    memory_gb: 1.0e+300", _HT + r"memory_gb: Input should be less than or equal to 1000000"),
    ("    memory_gb: 2048.0", "    memory_gb: 0.0001", _HT + r"memory_gb: is less than 1 MiB .*RealMemory"),
    ("    nvlink_gbps: 900.0", "    nvlink_gbps: 1.0e+30", _HT + r"nvlink_gbps: Input should be less than or equal to 100000"),
    ("    nic_gbps: 50.0", "    nic_gbps: 1.0e+308", _HT + r"nic_gbps: Input should be less than or equal to 100000"),
    ("    pcie_gbps: 64.0", "    pcie_gbps: 1.0e+300", _HT + r"pcie_gbps: Input should be less than or equal to 100000"),
    ("    gpu_memory_gb: 80.0", "    gpu_memory_gb: 1.0e+300", _HT + r"gpu_memory_gb: Input should be less than or equal to 100000"),
    ("uplink_gbps: 1600.0", "uplink_gbps: 1.0e+308", r"network\.groups\.0\.uplink_gbps: Input should be less than or equal to 100000000"),
])
def test_host_and_link_sizes_have_finite_upper_bounds(superpod_yaml, old, new, expect):
    """Unbounded, they exported RealMemory of 300 digits, gres.conf Links=-1,6666..., a numpy overflow."""
    _, edit = superpod_yaml
    assert re.search(r"edited\.yaml:\d+: " + expect, _error(edit(old, new)))


def test_the_largest_accepted_sizes_export_numbers_slurm_parses(superpod_yaml):
    from fabric_hpc.topology import export as ex

    _, edit = superpod_yaml
    path = superpod_yaml[0]
    text = path.read_text()
    for old, new in (("memory_gb: 2048.0", "memory_gb: 1000000.0"), ("nvlink_gbps: 900.0", "nvlink_gbps: 100000.0"),
                     ("nic_gbps: 50.0", "nic_gbps: 100000.0"), ("pcie_gbps: 64.0", "pcie_gbps: 100000.0")):
        text = text.replace(old, new)
    path.write_text(text)
    fab = load_fabric(str(path))
    assert "RealMemory=1024000000 " in ex.slurm_nodes_conf(fab)
    assert re.search(r"Links=-1,2000,2000,", ex.gres_conf(fab))
    tiny = edit("    memory_gb: 2048.0", "    memory_gb: 0.001")  # 1.024 MiB: RealMemory=1
    assert "RealMemory=1 " in ex.slurm_nodes_conf(load_fabric(tiny))


def test_names_slurm_refuses_or_that_repeat_in_one_list(tmp_path):
    """A group name over 64 characters passed validation and was exported as a SwitchName Slurm's
    topology/tree refuses (switch_record.c: HOST_NAME_MAX); a host given twice inside one host-list
    expression (``n[1-2],n1``) was dropped silently instead of being the duplicate it is."""
    from fabric_hpc.topology import generators, save_spec
    from fabric_hpc.topology.spec_check import check_spec

    path = tmp_path / "f.yaml"
    save_spec(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=2), path)
    text = path.read_text()
    assert "name: leaf1," in text and "hosts: 'n[1-2]'" in text
    check_spec(parse_spec(text.replace("leaf1", "leaf" + "x" * 60), source="f")[0])  # 64: taken
    with pytest.raises(ConfigError, match="at most 64 .SwitchName."):
        check_spec(parse_spec(text.replace("leaf1", "leaf" + "x" * 66), source="f")[0])
    with pytest.raises(ConfigError, match="names 'n1' twice"):
        check_spec(parse_spec(text.replace("hosts: 'n[1-2]'", "hosts: 'n[1-2],n1'"), source="f")[0])
    with pytest.raises(ConfigError, match="names 'n2' twice"):
        check_spec(parse_spec(text.replace("names: 'n[1-4]'", "names: 'n[1-4],n2'"), source="f")[0])


def test_nesting_errors_name_the_hosts_and_one_rule():
    """A domain with hosts in no rack read "spans 2 racks (None, rackA): ... inside a rack inside one
    rack"; a type with its own NVSwitches in a multi-host domain gave one identical line per host."""
    from fabric_hpc.topology import dump_spec, generators

    text = dump_spec(generators.nvl72(2))
    unracked = text.replace("- {names: 'r001-h[01-18]', type: gb200, rack: r001}",
                            "- {names: 'r001-h[01-09]', type: gb200, rack: r001}\n"
                            "- {names: 'r001-h[10-18]', type: gb200}")
    with pytest.raises(ConfigError) as err:
        parse_and_check(unracked)
    msg = str(err.value)
    assert "in no rack" in msg and "None" not in msg, msg
    assert "an NVLink domain must lie inside one rack; set the same rack on all its hosts" in msg, msg
    with pytest.raises(ConfigError) as err:
        parse_and_check(text.replace("    nvswitches: 0", "    nvswitches: 2\n").replace(
            "    nvlink_gbps: 0.0", "    nvlink_gbps: 100.0"))
    msg = str(err.value)
    assert msg.count("declares its own NVSwitches") == 1, msg
    assert "set nvswitches: 0 in host type" in msg, msg
