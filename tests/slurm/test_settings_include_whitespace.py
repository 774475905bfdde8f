"""slurm.conf ``Include`` lines as Slurm reads them (parse_config.c ``_parse_include_directive``: the
keyword in any case, then any whitespace, then the file name up to the next whitespace). A tab after
``Include`` (common in hand-aligned RHEL site configs) was not an Include to install: it printed
``JobSubmitPlugins=lua`` for a site whose included file sets ``require_timelimit``, dropping it."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.slurm.slurm_settings import conf_file_settings, conf_node_gres


def test_include_after_a_tab_with_an_absolute_path_under_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    site = root / "opt/site/slurm"
    site.mkdir(parents=True)
    (site / "slurm.conf").write_text("ClusterName=x\nINCLUDE\t/opt/site/slurm/jobs.conf\n"
                                     "include  \t nodes.conf   # the nodes\n")
    (site / "jobs.conf").write_text("JobSubmitPlugins=require_timelimit\n")
    (site / "nodes.conf").write_text("NodeName=n[1-2]\tGres=gpu:8,nvme:1\n")
    conf = Path("/opt/site/slurm/slurm.conf")
    assert conf_file_settings(conf, root) == {"JobSubmitPlugins": "require_timelimit"}
    assert conf_node_gres(conf, root) == {"n1": "nvme:1", "n2": "nvme:1"}


def test_a_key_that_starts_with_include_is_not_an_include(tmp_path: Path) -> None:
    (tmp_path / "slurm.conf").write_text("IncludeX=1\nInclude\nGresTypes=nvme\n")
    assert conf_file_settings(tmp_path / "slurm.conf") == {"GresTypes": "nvme"}


def test_a_glob_include_is_not_read_as_no_slurm_reads_it(tmp_path: Path) -> None:
    """Slurm expands no glob in an Include (23.11+: "Slurm does not support glob parsing", the line is
    skipped; 22.05 fails to open the literal name): a setting only a glob would bring in is not the site's."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "jobs.conf").write_text("JobSubmitPlugins=require_timelimit\n")
    (tmp_path / "slurm.conf").write_text("Include conf.d/*.conf\nGresTypes=nvme\n")
    assert conf_file_settings(tmp_path / "slurm.conf") == {"GresTypes": "nvme"}
    (tmp_path / "slurm.conf").write_text("Include conf.d/jobs.conf\n")  # the same file, named: read
    assert conf_file_settings(tmp_path / "slurm.conf") == {"JobSubmitPlugins": "require_timelimit"}


def test_percent_c_in_an_include_is_the_cluster_name_in_lower_case(tmp_path: Path) -> None:
    """parse_config.c ``_parse_for_format``: ``%c`` is the ClusterName read so far, lowered (one
    slurm.conf shared by several clusters, each with its own jobs file). Without a ClusterName before
    it, Slurm opens nothing, and neither do we."""
    (tmp_path / "jobs-gpu1.conf").write_text("JobSubmitPlugins=require_timelimit\n")
    (tmp_path / "slurm.conf").write_text("ClusterName=GPU1\nInclude jobs-%c.conf\nGresTypes=nvme\n")
    assert conf_file_settings(tmp_path / "slurm.conf") == {"JobSubmitPlugins": "require_timelimit",
                                                           "GresTypes": "nvme"}
    (tmp_path / "slurm.conf").write_text("Include jobs-%c.conf\nClusterName=gpu1\n")
    assert conf_file_settings(tmp_path / "slurm.conf") == {}


def test_keys_are_read_as_slurm_reads_pairs_quoted_or_several_on_a_line(tmp_path: Path) -> None:
    """parse_config.c's ``keyvalue_pattern``: a quoted value loses its quotes, and a line may hold several
    pairs; an entry line's later pairs (``NodeName=n1 Prolog=...``) are the entry's own."""
    (tmp_path / "jobs-gpu1.conf").write_text("JobSubmitPlugins=require_timelimit\n")
    (tmp_path / "slurm.conf").write_text('SlurmctldHost=h ClusterName="GPU1"\nInclude jobs-%c.conf\n'
                                         'Prolog="/etc/slurm/prolog.sh" GresTypes=nvme\n'
                                         'NodeName=n1 TaskProlog=/nope\n')
    assert conf_file_settings(tmp_path / "slurm.conf") == {"JobSubmitPlugins": "require_timelimit",
                                                           "Prolog": "/etc/slurm/prolog.sh",
                                                           "GresTypes": "nvme"}
