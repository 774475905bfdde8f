"""``fabric slurm install`` with ``install.topology_plugin = "block"`` on NVL72 racks plus DGX hosts in
no NVLink domain: planned (Slurm runs jobs that can use no block host on them; see
tests/topology/test_export_outside_blocks.py), with the note among the slurm.conf lines. It was
refused, naming flags of `fabric topology export` as the fix."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

USER = pwd.getpwuid(os.getuid()).pw_name


def _mixed(tmp_path: Path) -> Path:
    from fabric_hpc.topology import generators, save_spec, build

    spec = generators.nvl72(2).model_dump(mode="json", exclude_defaults=True)
    spec["host_types"]["dgx"] = generators.DGX_H100.model_dump(mode="json")
    spec["hosts"].append({"names": "dgx[1-2]", "type": "dgx"})
    spec["network"]["groups"][0]["hosts"] += ",dgx[1-2]"
    path = tmp_path / "mixed.yaml"
    save_spec(build({"fabric": 1, **spec}).spec, path)
    return path


@pytest.mark.parametrize(("fmt", "written"), [("auto", "topology.yaml"), ("conf", "topology.conf")])
def test_mixed_fabric_with_block_is_planned_with_the_note(tmp_path, capsys, fmt, written):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[agent]\ntopology = "{_mixed(tmp_path)}"\n[install]\nservice_user = "{USER}"\n'
                   f'python = "/usr/bin/python3"\ntopology_plugin = "block"\ntopology_format = "{fmt}"\n'
                   'slurm_version = "25.11.7"\n')
    root = str(tmp_path / "root")
    assert main(["slurm", "install", "--config", str(cfg), "--root", root, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "topology-yaml" not in err and "--format" not in out
    assert "+++ " in out and written in out
    note = next(ln for ln in out.splitlines()
                if ln.strip().startswith("# dgx[1-2] in no multi-host NVLink domain"))
    assert "--gres=gpu:h100:N" in note
