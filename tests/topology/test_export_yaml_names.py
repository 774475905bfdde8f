"""topology.yaml and names that look like numbers, booleans or null.

Slurm 25.11 reads every scalar of topology.yaml as a string and then retypes the whole tree
(``data_convert_tree(DATA_TYPE_NONE)`` in DATA_PARSE_FROM_STR), whatever the quoting or ``!!str`` tag:
a group ``'02'`` becomes the integer 2 and a spine listing child ``02`` is fatal. The export refuses
such names; ``fabric slurm install`` (topology_format auto) writes topology.conf, which keeps them.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import yaml

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import build
from fabric_hpc.topology import export as ex
from fabric_hpc.topology import export_yaml as exy

USER = pwd.getpwuid(os.getuid()).pw_name
HOST_TYPE = {"gpus": 1, "gpu_model": "H100-SXM5-80GB", "gpu_memory_gb": 80, "sockets": 1,
             "cores_per_socket": 2, "memory_gb": 1, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 64,
             "nics": 1, "nic_gbps": 50}


def _spec(leaves: dict[str, str], hosts: str, *, spine: bool = True) -> dict:
    groups = [{"name": name, "level": "leaf", "switches": 1, "hosts": members, "uplink_gbps": 100}
              for name, members in leaves.items()]
    if spine:
        groups.append({"name": "spine", "level": "spine", "switches": 1, "children": list(leaves)})
    return {"fabric": 1, "name": "names", "host_types": {"t": HOST_TYPE},
            "hosts": [{"names": hosts, "type": "t"}],
            "network": {"levels": ["leaf", "spine"] if spine else ["leaf"], "groups": groups}}


@pytest.mark.parametrize("name,what", [("01", "an integer"), ("001", "an integer"), ("1.5", "a number"),
                                       ("true", "a boolean"), ("2e3", "a number"), ("null", "null"),
                                       ("off", "a boolean"), ("0x1f", "an integer"),
                                       ("1e", "a number"), ("0x", "an integer")])
def test_group_names_slurm_retypes_are_refused(name, what):
    fab = build(_spec({name: "gpu[01-02]", "leafb": "gpu[03-04]"}, "gpu[01-04]"))
    with pytest.raises(ConfigError) as err:
        exy.topology_yaml(fab)
    text = str(err.value)
    assert f"switch (group) {name!r} would be read as {what}" in text, text
    assert "whatever the quoting" in text and "--format topology-tree" in text, text


def test_a_host_that_looks_like_a_number_is_refused():
    fab = build(_spec({"leafa": "07", "leafb": "n1"}, "07,n1"))
    with pytest.raises(ConfigError, match="nodes of switch 'leafa' would be read as an integer"):
        exy.topology_yaml(fab)
    assert "SwitchName=leafa Nodes=07" in ex.topology_conf(fab)  # topology.conf keeps it


@pytest.mark.parametrize("name", ["leaf01", "0x1g", "1ex", "yess", "x3", "su01-h01", "inf0"])
def test_names_slurm_keeps_as_strings_are_exported(name):
    fab = build(_spec({name: "gpu[01-02]", "leafb": "gpu[03-04]"}, "gpu[01-04]"))
    assert exy.slurm_yaml_retypes(name) is None and exy.yaml_retyped_names(fab) == []
    switches = yaml.safe_load(exy.topology_yaml(fab))[0]["tree"]["switches"]
    assert {"switch": name, "nodes": "gpu[01-02]"} in switches


def test_the_cli_export_fails_with_the_fix(tmp_path, capsys):
    path = tmp_path / "numgrp.yaml"
    path.write_text(yaml.safe_dump(_spec({"01": "gpu[01-02]", "02": "gpu[03-04]"}, "gpu[01-04]")))
    assert main(["topology", "export", str(path), "--format", "topology-yaml"]) == 3
    err = capsys.readouterr().err
    assert "switch (group) '02' would be read as an integer" in err and "Traceback" not in err, err
    assert main(["topology", "export", str(path), "--format", "topology-tree"]) == 0
    assert "SwitchName=spine Switches=01,02" in capsys.readouterr().out


def _install_config(tmp_path: Path, topology: Path, fmt: str) -> Path:
    path = tmp_path / "a.toml"
    path.write_text(f'[agent]\ntopology = "{topology}"\n[install]\nservice_user = "{USER}"\n'
                    f'python = "/usr/bin/python3"\nslurm_version = "25.11"\ntopology_format = "{fmt}"\n')
    return path


def test_install_falls_back_to_topology_conf_or_refuses_yaml(tmp_path, capsys):
    fabric = tmp_path / "numgrp.yaml"
    fabric.write_text(yaml.safe_dump(_spec({"01": "gpu[01-02]", "02": "gpu[03-04]"}, "gpu[01-04]")))
    cfg = _install_config(tmp_path, fabric, "auto")
    argv = ["slurm", "install", "--config", str(cfg), "--root", str(tmp_path / "root"), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "+++ /etc/slurm/topology.conf" in out and "+++ /etc/slurm/topology.yaml" not in out, out
    assert "TopologyPlugin=topology/tree" in out and "would be read as an integer" in out, out
    cfg = _install_config(tmp_path, fabric, "yaml")
    assert main(argv) == 3
    assert "switch (group) '01' would be read as an integer" in capsys.readouterr().err


# -- what a real slurmctld makes of them -------------------------------------------------------------
SAFE, RETYPED = ["leaf01", "0x1g", "yess", "1ex", ".5"], ["01", "1.5", "true", "1e", "0x"]


@pytest.mark.slurm
@pytest.mark.slurm_min(25, 5)  # topology.yaml
def test_slurmctld_retypes_exactly_the_refused_names(slurm_cluster_factory):
    """A topology.yaml written past the refusal: slurmctld warns for each refused name, and shows
    each other one verbatim."""
    names = SAFE + RETYPED
    hosts = [f"n{i}" for i in range(1, len(names) + 1)]
    fab = build(_spec({"leafx": ",".join(hosts)}, ",".join(hosts), spine=False))
    switches = [{"switch": name, "nodes": host} for name, host in zip(names, hosts)]
    text = yaml.safe_dump([{"topology": "tree", "cluster_default": True, "tree": {"switches": switches}}])
    cluster = slurm_cluster_factory(fab, config_files={"topology.yaml": text})
    try:
        shown = set(cluster.topology())
        assert set(SAFE) <= shown and not {"01", "1.5", "1e", "0x"} & shown, shown  # true: a bool
        log = cluster.log_paths()["slurmctld"].read_text()
        warned = [line for line in log.splitlines() if "#/tree/switches/switch/" in line
                  and "Expected OpenAPI type=string" in line]
        assert len(warned) == len(RETYPED), warned
        assert all(exy.slurm_yaml_retypes(n) for n in RETYPED) and not any(map(exy.slurm_yaml_retypes, SAFE))
    finally:
        cluster.stop()


@pytest.mark.slurm
@pytest.mark.slurm_min(25, 5)  # the Slurm that would read topology.yaml
def test_slurmctld_keeps_such_names_in_topology_conf(slurm_cluster_factory):
    """What install writes instead (topology.conf) keeps the names. (A host '07' too, checked by hand:
    the test cluster itself takes only node names that start with a letter.)"""
    fab = build(_spec({"01": "n1", "1.5": "n2"}, "n[1-2]"))
    with pytest.raises(ConfigError):
        exy.topology_yaml(fab)
    cluster = slurm_cluster_factory(fab, topology_plugin="tree")
    try:
        shown = cluster.topology()
        assert set(shown) == {"01", "1.5", "spine"}, shown
        assert shown["01"]["nodes"] == ["n1"] and shown["spine"]["switches"] == ["01", "1.5"], shown
    finally:
        cluster.stop()
