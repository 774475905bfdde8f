"""`fabric slurm install` wrote no [agent] ckpt_root: the agent started with "ckpt_root": null, read no
checkpoint times and charged preempted spot gangs their whole run. The installed agent.toml carries
the TaskProlog's root (install.ckpt_root) unless [agent] names its own."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fabric_hpc.slurm.deploy_config import agent_config, load_config
from fabric_hpc.slurm.unit import agent_toml


def _installed(tmp_path: Path, agent_extra: str = "") -> dict:
    src = tmp_path / "src.toml"
    src.write_text(f'[agent]\ntopology = "leaf-spine:hosts=4,hosts_per_leaf=2,gpus=8"\n'
                   f'state_dir = "{tmp_path}/state"\n{agent_extra}\n'
                   f'[install]\nconfig_dir = "{tmp_path}/etc"\nckpt_root = "{tmp_path}/site/ckpt"\n')
    cfg, _ = load_config(src)
    out = tmp_path / "agent.toml"
    out.write_text(agent_toml(cfg))
    installed, _ = load_config(out)  # what the service reads back
    assert agent_config(installed.agent).ckpt_root == installed.agent.ckpt_root
    return tomllib.loads(out.read_text())


def test_the_installed_agent_reads_the_task_prologs_ckpt_root(tmp_path: Path) -> None:
    data = _installed(tmp_path)
    assert data["agent"]["ckpt_root"] == f"{tmp_path}/site/ckpt" == data["install"]["ckpt_root"]


def test_an_agent_ckpt_root_of_its_own_is_kept(tmp_path: Path) -> None:
    data = _installed(tmp_path, f'ckpt_root = "{tmp_path}/other"')
    assert data["agent"]["ckpt_root"] == f"{tmp_path}/other"
