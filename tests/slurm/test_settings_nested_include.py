"""slurm.conf Includes nested in an Included file: Slurm resolves a relative name against slurm.conf's
directory (``get_extra_conf_path``: dirname of SLURM_CONF), not against the including file's. Before,
install read ``conf.d/gres-types.conf`` where slurmctld reads ``gres-types.conf`` beside slurm.conf, and
printed the GresTypes / node GRES of a file Slurm never reads."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.slurm.slurm_settings import conf_file_settings, conf_node_gres


def test_nested_relative_include_is_read_from_the_conf_dir(tmp_path: Path):
    root = tmp_path / "root"
    conf = root / "etc/slurm"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "slurm.conf").write_text("ClusterName=x\nInclude conf.d/site.conf\n")
    (conf / "conf.d/site.conf").write_text("Include gres-types.conf\nInclude nodes.conf\n")
    (conf / "gres-types.conf").write_text("GresTypes=nvme\n")
    (conf / "nodes.conf").write_text("NodeName=n[1-2] Gres=gpu:8,nvme:1\n")
    (conf / "conf.d/gres-types.conf").write_text("GresTypes=decoy\n")   # Slurm never reads these
    (conf / "conf.d/nodes.conf").write_text("NodeName=n[1-2] Gres=gpu:8,decoy:1\n")
    slurm_conf = Path("/etc/slurm/slurm.conf")
    assert conf_file_settings(slurm_conf, root) == {"GresTypes": "nvme"}
    assert conf_node_gres(slurm_conf, root) == {"n1": "nvme:1", "n2": "nvme:1"}
