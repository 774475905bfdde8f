"""``fabric slurm install`` on a site with more GRES than GPUs (``GresTypes=gpu,nvme``, nodes with
``Gres=gpu:h100:8,nvme:1``): before, it always printed ``GresTypes=gpu`` and node lines with the GPUs
only; following it removed the site's nvme GRES."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.slurm.slurm_settings import (conf_file_settings, conf_node_gres, gres_types_line,
                                             other_gres, parse_show_config, show_nodes_gres)
from tests.deploy.test_install import fabric, write_config

SLURM_CONF = """ClusterName=site
GresTypes=nvme   # the site's own
NodeName=su01-h[01-02] CPUs=224 RealMemory=2097152 Gres=gpu:h100:8,nvme:1 Features=h100
NodeName=su01-h[03-32] CPUs=224 RealMemory=2097152 Gres=gpu:h100:8
"""


def test_install_keeps_the_sites_gres_types_and_node_gres(tmp_path, capsys):
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    (root / "etc/slurm").mkdir(parents=True)
    (root / "etc/slurm/slurm.conf").write_text(SLURM_CONF)
    assert conf_file_settings(Path("/etc/slurm/slurm.conf"), root)["GresTypes"] == "nvme"
    assert conf_node_gres(Path("/etc/slurm/slurm.conf"), root) == {"su01-h01": "nvme:1", "su01-h02": "nvme:1"}
    assert fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "  GresTypes=nvme,gpu\n" in out and "  GresTypes=gpu\n" not in out, out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("NodeName=")]
    assert any(ln.strip().startswith("NodeName=su01-h[01-02] ") and " Gres=gpu:h100:8,nvme:1 " in ln
               for ln in lines), lines
    assert any(ln.strip().startswith("NodeName=su01-h[03-32] ") and " Gres=gpu:h100:8 " in ln
               for ln in lines), lines


def test_gres_types_and_node_gres_as_a_running_slurmctld_answers():
    assert parse_show_config("GresTypes               = gpu,nvme\n")["GresTypes"] == "gpu,nvme"
    assert gres_types_line("gpu,nvme") == "GresTypes=gpu,nvme"
    assert gres_types_line(None) == "GresTypes=gpu" and gres_types_line("(null)") == "GresTypes=gpu"
    assert other_gres("gpu:h100:8(S:0-1),nvme:1") == "nvme:1" and other_gres("gpu:8") == ""
    # scontrol -o show nodes (22.05 and 25.11 print Gres= the same way)
    text = ("NodeName=n1 Arch=x86_64 CoresPerSocket=4 Gres=gpu:h100:8(S:0-1),nvme:1 NodeAddr=127.0.0.1\n"
            "NodeName=n2 Arch=x86_64 CoresPerSocket=4 Gres=gpu:h100:8(S:0-1) NodeAddr=127.0.0.1\n")
    assert show_nodes_gres(text) == {"n1": "nvme:1"}


def test_node_lines_keys_in_any_case_and_through_includes(tmp_path):
    """slurm.conf keys are case-insensitive (`nodename=`, `GRES=`), and NodeName lines of Include files
    count: both are read like the settings are."""
    from fabric_hpc.slurm.slurm_settings import conf_node_gres

    (tmp_path / "nodes.conf").write_text("nodename=b[1-2] gres=gpu:4,nvme:2 # comment\n")
    (tmp_path / "slurm.conf").write_text("NODENAME=a1 GRES=gpu:h100:8,nvme:1\nInclude nodes.conf\n")
    got = conf_node_gres(tmp_path / "slurm.conf")
    assert got == {"a1": "nvme:1", "b1": "nvme:2", "b2": "nvme:2"}, got
