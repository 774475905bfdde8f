"""The admin's probe of install/uninstall against a running slurmctld (the unit tests:
tests/deploy/test_install_order_probe.py): install reads the site's ``JobSubmitPlugins`` from an
Included file and keeps it; ``fabric agent check`` fails while lua is not configured; uninstall refuses
while slurmctld's ``Prolog``/``TaskProlog`` name its files (on 22.05 the next job then failed its
prolog and drained the node), and runs once they are out of slurm.conf and slurmctld reconfigured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.cli.main import main
from tests.deploy.test_install import write_config

pytestmark = [pytest.mark.slurm]


def test_install_and_uninstall_follow_the_running_slurmctld(slurm_cluster_factory: Any, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    task, prolog = site / "etc/fabric-hpc/task_prolog.py", site / "etc/fabric-hpc/prolog.py"
    cluster = slurm_cluster_factory(None, nodes=2, settings={"TaskProlog": str(task), "Prolog": str(prolog)},
                                    config_files={"site.conf": "jobsubmitplugins=require_timelimit\n"},
                                    extra_conf="Include {etc_dir}/site.conf\n")
    for key in ("PATH", "SLURM_CONF"):
        monkeypatch.setenv(key, cluster.env[key])
    cfg = write_config(tmp_path / "agent.toml", base=site, slurm_conf=str(cluster.conf_path))

    assert main(["slurm", "install", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "  JobSubmitPlugins=require_timelimit,lua\n" in out, out
    assert "JobSubmitPlugins is require_timelimit now (scontrol show config)" in out, out

    main(["agent", "check", "--config", str(site / "etc/fabric-hpc/agent.toml"), "--json"])
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)["checks"]}
    row = rows["slurm.conf"]
    assert not row["ok"] and "JobSubmitPlugins is require_timelimit: no lua" in row["detail"], row
    assert "JobSubmitPlugins=require_timelimit,lua" in row["detail"], row  # the fix names the line

    assert main(["slurm", "uninstall", "--config", str(cfg)]) == 3
    err = capsys.readouterr().err
    assert f"TaskProlog={task}" in err and "scontrol reconfigure" in err, err
    assert task.exists()  # nothing removed

    # the documented order: the lines out of slurm.conf, `scontrol reconfigure`, then uninstall
    conf = cluster.conf_path.read_text().splitlines()
    cluster.conf_path.write_text("".join(f"{line}\n" for line in conf
                                         if not line.startswith(("TaskProlog=", "Prolog="))))
    cluster.run(["scontrol", "reconfigure"])
    assert main(["slurm", "uninstall", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "names none of the removed files" in out and not task.exists(), out
