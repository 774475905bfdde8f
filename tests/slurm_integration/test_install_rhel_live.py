"""A site whose slurmctld reads a slurm.conf outside /etc/slurm (SLURM_CONF in /etc/sysconfig/slurmctld,
or a prefix install): ``scontrol show config`` names slurmctld's own file, and ``fabric slurm install``
with ``install.slurm_conf_dir`` left at /etc/slurm refuses, before writing, to put job_submit.lua where
slurmctld never loads it (unit half: tests/deploy/test_install_rhel.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.cli.main import main
from tests.deploy.test_install import GROUP, USER

pytestmark = [pytest.mark.slurm]


def test_install_refuses_a_default_slurm_conf_dir_slurmctld_does_not_read(
        slurm_cluster_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = slurm_cluster_factory(None, nodes=1)
    client = tmp_path / "client"  # the admin's shell reads a copy elsewhere: slurmctld's own path is named
    client.mkdir()
    shutil.copy(cluster.conf_path, client / "slurm.conf")
    monkeypatch.setenv("PATH", cluster.env["PATH"])
    monkeypatch.setenv("SLURM_CONF", str(client / "slurm.conf"))
    site = tmp_path / "site"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""[agent]
topology = "superpod:sus=1"
state_dir = "{site}/var/lib/fabric-agent"
[install]
service_user = "{USER}"
slurm_group = "{GROUP}"
python = "{sys.executable}"
config_dir = "{site}/etc/fabric-hpc"
unit_dir = "{site}/etc/systemd/system"
""")
    assert main(["slurm", "install", "--config", str(cfg), "--dry-run"]) == 3
    err = capsys.readouterr().err
    assert f"the running slurmctld reads {cluster.conf_path}" in err, err
    assert "not from install.slurm_conf_dir /etc/slurm" in err and "nothing was written" in err, err
    assert f'agent.slurm_conf = "{cluster.conf_path}"' in err, err
    assert not site.exists()
