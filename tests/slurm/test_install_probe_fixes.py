"""fabric slurm install refuses topology files the configured Slurm cannot read, and takes a base
block size (install.block_size) for blocks of unequal sizes."""

from __future__ import annotations

import pwd
import os
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.slurm.deploy_config import load_config

USER = pwd.getpwuid(os.getuid()).pw_name


def _config(tmp_path: Path, topology: str, **install: str | int) -> Path:
    lines = ["[agent]", f'topology = "{topology}"', "[install]", f'service_user = "{USER}"',
             'python = "/usr/bin/python3"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in install.items()]
    path = tmp_path / "a.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _nvl72_with_hosts_out(tmp_path: Path) -> Path:
    """Two NVL72 racks, the second with 15 hosts in service (blocks of 18 and 15 hosts)."""
    from fabric_hpc.topology import dump_spec
    from fabric_hpc.topology.generators import nvl72

    text = dump_spec(nvl72(2)).replace("r002-h[01-18]", "r002-h[01-15]")
    path = tmp_path / "nvl72.yaml"
    path.write_text(text)
    return path


def _install(cfg: Path, root: Path, *extra: str) -> int:
    return main(["slurm", "install", "--config", str(cfg), "--root", str(root), *extra])


@pytest.mark.parametrize("dry", [True, False])
def test_block_on_slurm_22_05_is_refused_before_writing(tmp_path, capsys, dry):
    cfg = _config(tmp_path, "superpod:sus=1", slurm_version="22.05", topology_plugin="block")
    root = tmp_path / "root"
    assert _install(cfg, root, *(["--dry-run"] if dry else [])) == 3
    err = capsys.readouterr().err
    assert "topology_plugin = \"block\" needs Slurm 23.11 or newer; this Slurm is 22.05" in err, err
    assert "fix: set install.topology_plugin = \"tree\"" in err
    assert not root.exists()


def test_block_on_slurm_23_11_is_planned(tmp_path, capsys):
    cfg = _config(tmp_path, "superpod:sus=1", slurm_version="23.11", topology_plugin="block",
                  topology_format="conf")
    assert _install(cfg, tmp_path / "root", "--dry-run") == 0
    out = capsys.readouterr().out
    # 23.11 reads BlockLevels (BlockSizes, 24.05+, is fatal there): tests/topology/test_export_block_2311.py
    assert "TopologyPlugin=topology/block" in out and "+BlockLevels=0" in out and "BlockSizes" not in out


def test_yaml_below_25_05_is_refused(tmp_path, capsys):
    for version in ("22.05", "24.11"):
        cfg = _config(tmp_path, "superpod:sus=1", slurm_version=version, topology_format="yaml")
        assert _install(cfg, tmp_path / "root", "--dry-run") == 3
        err = capsys.readouterr().err
        assert f"topology_format = \"yaml\" needs Slurm 25.05 or newer; this Slurm is {version}" in err, err
        assert "fix: set install.topology_format = \"conf\"" in err
    cfg = _config(tmp_path, "superpod:sus=1", slurm_version="25.05", topology_format="yaml")
    assert _install(cfg, tmp_path / "root", "--dry-run") == 0
    assert "+++ /etc/slurm/topology.yaml" in capsys.readouterr().out


def test_unequal_blocks_install_with_block_size(tmp_path, capsys):
    fab = _nvl72_with_hosts_out(tmp_path)
    cfg = _config(tmp_path, str(fab), slurm_version="25.11", topology_plugin="block", topology_format="conf")
    assert _install(cfg, tmp_path / "root", "--dry-run") == 3
    err = capsys.readouterr().err
    assert "blocks of unequal sizes (1 × 15, 1 × 18 hosts)" in err and "install.block_size = N" in err, err
    cfg = _config(tmp_path, str(fab), slurm_version="25.11", topology_plugin="block", topology_format="conf",
                  block_size=15)
    assert _install(cfg, tmp_path / "root", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "+BlockSizes=15,30" in out and "+BlockName=r002 Nodes=r002-h[01-15]" in out, out
    assert "+block_size = 15" in out  # the installed agent.toml keeps it


@pytest.mark.parametrize("value", [0, 2_000_000])
def test_block_size_is_validated(tmp_path, capsys, value):
    cfg = _config(tmp_path, "superpod:sus=1", block_size=value)
    assert main(["agent", "check", "--config", str(cfg)]) == 3
    assert "block_size must be in 1..1048576" in capsys.readouterr().err
    cfg = _config(tmp_path, "superpod:sus=1", block_size=4)
    assert load_config(cfg)[0].install.block_size == 4
