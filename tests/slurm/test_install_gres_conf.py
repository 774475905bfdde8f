"""``fabric slurm install --force`` over a site's own gres.conf. Before, the file it wrote declared
fabric's GPUs only: the site's other GRES lines (``Name=nvme File=...``, ``Name=mps``, ``Name=shard``)
and its ``AutoDetect=nvml`` were lost (kept only in ``gres.conf.fabric-backup``): a GRES declared with
``File=`` in slurm.conf's node line lost its device, and an mps/shard count its binding to the GPUs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.site_gres import MAX_GRES_CONF, parse_site_gres, read_site_gres
from tests.deploy.test_install import fabric, write_config

SITE = """# the site's gres.conf
AutoDetect=nvml
Name=gpu Type=h100 File=/dev/nvidia[0-7]

# scratch disks
NodeName=su01-h[01-02] Name=nvme File=/dev/nvme0n1  # one per node
Name=mps Count=800
NodeName=su01-h[01-32] Name=shard \\
  Count=64
Include /etc/slurm/gres.d/*.conf
"""
HOSTS = {f"su01-h{i:02d}" for i in range(1, 33)}


def _install(tmp_path: Path, site: str | bytes | None, *args: str) -> tuple[int, Path, Path]:
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    gres = root / "etc/slurm/gres.conf"
    gres.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(site, bytes):
        gres.write_bytes(site)
    elif site is not None:
        gres.write_text(site)
    return fabric("slurm", "install", "--config", str(cfg), "--root", str(root), *args), root, gres


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_force_keeps_the_sites_other_gres_and_its_autodetect(tmp_path, capsys):
    rc, root, gres = _install(tmp_path, SITE, "--force")
    out = capsys.readouterr().out
    assert rc == 0, out
    text = gres.read_text()
    assert (root / "etc/slurm/gres.conf.fabric-backup").read_text() == SITE
    lines = _lines(text)
    # the site's GPU line is replaced by fabric's (every one with a node-local AutoDetect=off, so the
    # site's global AutoDetect=nvml, kept, does not sanity-check fabric's Cores/Links on these nodes)
    assert "Name=gpu Type=h100 File=/dev/nvidia[0-7]" not in text
    gpu = [ln for ln in lines if " Name=gpu " in f" {ln} "]
    assert len(gpu) == 8 and all(re.match(r"NodeName=su01-h\[01-32\] AutoDetect=off Name=gpu ", ln)
                                 for ln in gpu), gpu
    assert [ln for ln in lines if ln.lower().startswith("autodetect=")] == ["AutoDetect=nvml"]
    # the site's other lines, verbatim (a continued line too, and the comment just above a kept line)
    for kept in ("NodeName=su01-h[01-02] Name=nvme File=/dev/nvme0n1  # one per node", "Name=mps Count=800",
                 "NodeName=su01-h[01-32] Name=shard \\\n  Count=64", "Include /etc/slurm/gres.d/*.conf",
                 "# scratch disks\nNodeName=su01-h[01-02]"):
        assert kept in text, text
    assert "# the site's gres.conf" not in text
    said = [ln for ln in out.splitlines() if ln.startswith("kept ")]
    assert any("3 lines of the site's gres.conf" in ln and "nvme" in ln and "mps" in ln and "shard" in ln
               for ln in said), out
    assert any("AutoDetect=nvml" in ln for ln in said) and any("Include" in ln for ln in said), out
    assert any("replaced 1 site line for gpu" in ln for ln in out.splitlines()), out
    # a rerun reads fabric's own file back: nothing changes, nothing is kept twice
    rc, _, gres = _install(tmp_path, None)
    assert rc == 0 and gres.read_text() == text
    assert "unchanged /etc/slurm/gres.conf" in capsys.readouterr().out


def test_site_without_autodetect_gets_a_global_off_and_its_lines_kept(tmp_path, capsys):
    site = "Name=gpu File=/dev/nvidia[0-7]\nNodeName=su01-h01 Name=nvme Count=1\n"
    rc, _, gres = _install(tmp_path, site, "--force")
    assert rc == 0, capsys.readouterr()
    lines = _lines(gres.read_text())
    assert lines[0] == "AutoDetect=off" and lines[-1] == "NodeName=su01-h01 Name=nvme Count=1"
    assert not any("AutoDetect" in ln for ln in lines[1:]), lines


def test_dry_run_shows_the_kept_lines(tmp_path, capsys):
    rc, _, gres = _install(tmp_path, SITE, "--dry-run", "--force")
    out = capsys.readouterr().out
    assert rc == 0 and gres.read_text() == SITE
    assert "-Name=gpu Type=h100 File=/dev/nvidia[0-7]" in out and "-Name=mps Count=800" not in out, out
    assert any(ln.startswith("kept ") and "nvme" in ln for ln in out.splitlines()), out


def test_node_local_autodetect_on_fabric_nodes_is_dropped_and_said():
    """slurmd stops on a second node-local AutoDetect that differs from the first ("duplicate node-local
    AutoDetect specification does not match the first"); on a node fabric does not declare, it stays,
    and so does the site's GPU line for such a node."""
    site = ("NodeName=su01-h01 AutoDetect=nvml\n"
            "NodeName=su01-h02 AutoDetect=nvml Name=mps Count=100\n"
            "NodeName=other[1-2] AutoDetect=nvml\n"
            "NodeName=other[1-2] Name=gpu File=/dev/nvidia[0-3]\n"
            "NodeName=su01-h05,other1 Name=gpu File=/dev/nvidia0\n")
    got = parse_site_gres(site, "/etc/slurm/gres.conf", HOSTS)
    assert got.kept == ("NodeName=su01-h02 Name=mps Count=100", "NodeName=other[1-2] AutoDetect=nvml",
                        "NodeName=other[1-2] Name=gpu File=/dev/nvidia[0-3]",
                        "NodeName=other1 Name=gpu File=/dev/nvidia0"), got.kept
    assert got.replaced_gpu == 1 and got.autodetect is None
    assert len(got.notes) == 3 and all("AutoDetect=nvml" in n for n in got.notes[:2]), got.notes
    assert "line 5 for other1 only" in got.notes[2]


def test_a_gpu_line_of_model_and_other_nodes_is_narrowed_to_the_others():
    """Replaced whole, node17-20's GPUs had no line left (slurmd then finds fewer GPUs than slurm.conf
    and the node is drained)."""
    hosts = {f"node{i:02d}" for i in range(1, 17)}
    got = parse_site_gres("NodeName=node[01-20] Name=gpu Type=h100 File=/dev/nvidia[0-7]\n", "g.conf", hosts)
    assert got.kept == ("NodeName=node[17-20] Name=gpu Type=h100 File=/dev/nvidia[0-7]",)
    assert got.replaced_gpu == 1 and "node[17-20]" in got.notes[0]


def test_names_and_keys_in_any_case():
    text = "autodetect=NVML\nNAME=GPU File=/dev/nvidia0\nnodename=su01-h01 name=Nvme count=1\n"
    got = parse_site_gres(text, "gres.conf", HOSTS)
    assert got.autodetect == "NVML" and got.replaced_gpu == 1
    assert got.kept == ("nodename=su01-h01 name=Nvme count=1",)
    assert len(got.notes) == 1 and "without NodeName" in got.notes[0]  # other nodes need their own


@pytest.mark.parametrize("case", ["huge", "directory", "binary", "bad-hostlist"])
def test_a_gres_conf_install_cannot_read_is_a_clear_error(tmp_path, capsys, case):
    site: str | bytes | None = {"huge": "# x\n" * (MAX_GRES_CONF // 4 + 1), "binary": b"Name=nvme\xff\xfe\n",
                                "bad-hostlist": "NodeName=n[1-2 Name=nvme Count=1\n"}.get(case)
    if case == "directory":
        (tmp_path / "root/etc/slurm/gres.conf").mkdir(parents=True)
    rc, root, gres = _install(tmp_path, site, "--force")
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "gres.conf" in err and "Traceback" not in err, err
    assert not (root / "etc/slurm/job_submit.lua").exists()  # refused before writing anything


def test_read_site_gres_missing_and_fifo(tmp_path):
    import os

    assert read_site_gres(tmp_path / "gres.conf", "/etc/slurm/gres.conf", HOSTS) is None
    os.mkfifo(tmp_path / "gres.conf")  # never blocks
    with pytest.raises(ConfigError, match="not a regular file"):
        read_site_gres(tmp_path / "gres.conf", "/etc/slurm/gres.conf", HOSTS)
