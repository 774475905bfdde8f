"""A fabric name cannot break the comment line it is printed in.

YAML 1.1 (libyaml: slurmctld's topology.yaml reader, PyYAML) breaks lines at U+0085, U+2028 and
U+2029, and Python's ``str.splitlines`` (our own importers) at those and the C0 separators: a name
holding one injected a whole extra topology into the exported topology.yaml, and extra lines into
topology.conf and gres.conf. Such names are refused; a name is written escaped in any case.
"""

from __future__ import annotations

import pytest
import yaml

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import Fabric, build, dump_spec, generators
from fabric_hpc.topology.export import gres_conf, topology_conf
from fabric_hpc.topology.export_yaml import topology_yaml
from fabric_hpc.topology.io import parse_spec

INJECTED = "x{0}- {{topology: evil, cluster_default: true, flat: true}}{0}#"


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029", "\x9b", "\x1c", "\t"])
def test_line_breaking_name_is_refused(char: str) -> None:
    text = dump_spec(generators.leaf_spine(hosts=4, hosts_per_leaf=2))
    data = yaml.safe_load(text)
    data["name"] = INJECTED.format(char)
    with pytest.raises(ConfigError) as err:
        parse_spec(yaml.safe_dump(data))  # escaped: "\\N", "\\L", "\\P"
    assert "name: holds control characters or line breaks" in err.value.message
    assert repr(char)[1:-1] in err.value.message


def test_printable_unicode_name_is_kept() -> None:
    data = generators.leaf_spine(hosts=4, hosts_per_leaf=2).model_dump()
    data["name"] = "Rechenzentrum Süd – Halle 2"
    assert build(data).name == "Rechenzentrum Süd – Halle 2"


def test_exports_escape_a_name_in_their_comment_line() -> None:
    spec = generators.leaf_spine(hosts=4, hosts_per_leaf=2)
    fab = Fabric(spec.model_copy(update={"name": INJECTED.format("\u2028")}))  # past the validator
    plain = build(spec)
    entries = yaml.load(topology_yaml(fab), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert entries == yaml.safe_load(topology_yaml(plain))
    for text, clean in ((topology_conf(fab), topology_conf(plain)), (gres_conf(fab), gres_conf(plain)),
                        (topology_yaml(fab), topology_yaml(plain))):
        assert len(text.splitlines()) == len(clean.splitlines())
        assert "\\u2028- {topology: evil" in text.splitlines()[0]
