"""``fabric slurm install`` over a site gres.conf with ``Name=mps``/``Name=shard`` ``File=`` lines and
``Include`` lines. Before, an mps/shard line naming files of no GPU in fabric's lines was kept as it
was (slurmd then discards it: "Discarding gres/'shared' configuration (File=...) without matching
gres/'sharing' record", and the node loses its MPS/shard counts), and the files an Include names were
never read (a ``Name=gpu`` line there for the model's nodes declared their GPUs twice)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.site_gres import MAX_INCLUDE_DEPTH, gpu_files, parse_site_gres
from fabric_hpc.topology import build, generators
from tests.deploy.test_install import fabric, write_config

HOSTS = {f"su01-h{i:02d}" for i in range(1, 33)}   # superpod:sus=1, 8 GPUs each


def _install(tmp_path: Path, site: str, extra: dict[str, str] | None = None) -> tuple[int, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg, root = write_config(tmp_path / "agent.toml"), tmp_path / "root"
    conf = root / "etc/slurm"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "gres.conf").write_text(site)
    for name, text in (extra or {}).items():
        (root / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / name.lstrip("/")).write_text(text)
    rc = fabric("slurm", "install", "--config", str(cfg), "--root", str(root), "--force")
    return rc, conf / "gres.conf"


def test_mps_and_shard_files_of_fabrics_gpus_are_kept(tmp_path, capsys):
    site = ("NodeName=su01-h[01-32] Name=mps Count=800 File=/dev/nvidia[0-7]\n"
            "Name=shard Count=64 File=/dev/nvidia0,/dev/nvidia1\n")
    rc, gres = _install(tmp_path, site)
    assert rc == 0, capsys.readouterr()
    assert "Name=mps Count=800 File=/dev/nvidia[0-7]" in gres.read_text()


def test_mps_file_past_the_models_gpus_is_refused(tmp_path, capsys):
    site = "NodeName=su01-h[01-32] Name=mps Count=1600 File=/dev/nvidia[0-15]\n"
    rc, gres = _install(tmp_path, site)
    err = capsys.readouterr().err
    assert rc == 3 and gres.read_text() == site, err
    assert "line 1: Name=mps File=/dev/nvidia[0-15] names /dev/nvidia[8-15]" in err, err
    assert "Discarding gres/'shared'" in err and "su01-h[01-32]" in err and "Traceback" not in err


def test_shard_files_in_another_device_dir_are_refused():
    files = gpu_files(build(generators.superpod(1)), "/dev")
    text = "Name=shard Count=8 File=/dev/gpu/nvidia[0-7]\n"   # no NodeName: every node
    with pytest.raises(ConfigError, match=r"names /dev/gpu/nvidia\[0-7\], not a GPU .* /dev/nvidia\[0-7\]"):
        parse_site_gres(text, "gres.conf", HOSTS, gpu_files=files)
    # gres.c reads Files= as File=, and GRES names in any case
    with pytest.raises(ConfigError, match=r"Name=MPS File=/dev/nvidia\[6-9\] names /dev/nvidia\[8-9\]"):
        parse_site_gres("NodeName=su01-h03 Name=MPS Count=8 Files=/dev/nvidia[6-9]\n", "gres.conf", HOSTS,
                        gpu_files=files)
    # nodes outside the model are not fabric's to check, and a line without File= spreads its Count
    ok = parse_site_gres("NodeName=other[1-2] Name=mps Count=8 File=/dev/x[0-1]\nName=mps Count=100\n",
                         "gres.conf", HOSTS, gpu_files=files)
    assert len(ok.kept) == 2


def test_include_declaring_the_models_gpus_is_refused(tmp_path, capsys):
    site = "Name=nvme File=/dev/nvme0n1\nInclude gres.d/gpus.conf\n"
    inc = {"/etc/slurm/gres.d/gpus.conf": "# gpus\nNodeName=su01-h[01-04] Name=gpu File=/dev/nvidia[0-7]\n"}
    rc, gres = _install(tmp_path, site, inc)
    err = capsys.readouterr().err
    assert rc == 3 and gres.read_text() == site, err
    assert "/etc/slurm/gres.d/gpus.conf, and its line 2 has a Name=gpu line for su01-h[01-04]" in err, err


def test_include_of_other_nodes_and_gres_is_read_and_its_autodetect_counts(tmp_path, capsys):
    site = "Include /etc/slurm/site-gres.conf\n"
    inc = {"/etc/slurm/site-gres.conf": "AutoDetect=nvml\nNodeName=cpu[1-4] Name=gpu File=/dev/nvidia0\n"
                                        "NodeName=su01-h01 Name=mps Count=100 File=/dev/nvidia[0-7]\n"}
    rc, gres = _install(tmp_path, site, inc)
    out = capsys.readouterr().out
    assert rc == 0, out
    text = gres.read_text()
    # the included global AutoDetect=nvml holds where the Include stands: fabric's lines opt out
    assert "AutoDetect=nvml" in text and " AutoDetect=off Name=gpu " in text, text
    assert "Include /etc/slurm/site-gres.conf" in text
    assert "read /etc/slurm/site-gres.conf: no GPU lines for the model's nodes" in out, out


def test_include_mps_file_mismatch_is_refused(tmp_path, capsys):
    inc = {"/etc/slurm/mps.conf": "NodeName=su01-h01 Name=mps Count=100 File=/dev/nvidia[4-11]\n"}
    rc, _ = _install(tmp_path, "Include mps.conf\n", inc)
    err = capsys.readouterr().err
    assert rc == 3 and "/etc/slurm/mps.conf line 1: Name=mps" in err and "/dev/nvidia[8-11]" in err, err


def test_include_loop_depth_missing_fifo_and_escape_are_refused(tmp_path, capsys):
    rc, _ = _install(tmp_path, "Include a.conf\n", {"/etc/slurm/a.conf": "Include b.conf\n",
                                                    "/etc/slurm/b.conf": "Include /etc/slurm/a.conf\n"})
    err = capsys.readouterr().err
    assert rc == 3 and "reads /etc/slurm/a.conf again" in err and "recurse" in err, err

    chain = {f"/etc/slurm/d{i}.conf": f"Include d{i + 1}.conf\n" for i in range(MAX_INCLUDE_DEPTH + 2)}
    chain[f"/etc/slurm/d{MAX_INCLUDE_DEPTH + 2}.conf"] = "Name=nvme File=/dev/nvme0n1\n"
    rc, _ = _install(tmp_path / "deep", "Include d0.conf\n", chain)
    err = capsys.readouterr().err
    assert rc == 3 and f"past the {MAX_INCLUDE_DEPTH} levels" in err, err

    rc, _ = _install(tmp_path / "missing", "Include nope.conf\n")
    err = capsys.readouterr().err
    assert rc == 3 and "/etc/slurm/nope.conf, which does not exist" in err, err

    fifo_root = tmp_path / "fifo"
    (fifo_root / "root/etc/slurm").mkdir(parents=True)
    os.mkfifo(fifo_root / "root/etc/slurm/pipe.conf")
    rc, _ = _install(fifo_root, "Include pipe.conf\n")
    err = capsys.readouterr().err
    assert rc == 3 and "/etc/slurm/pipe.conf: not a regular file" in err, err

    outside = tmp_path / "secret.conf"
    outside.write_text("NodeName=su01-h01 Name=gpu File=/dev/nvidia0\n")
    esc = tmp_path / "esc"
    (esc / "root/etc/slurm").mkdir(parents=True)
    (esc / "root/etc/slurm/link.conf").symlink_to(outside)
    rc, _ = _install(esc, "Include link.conf\n")
    err = capsys.readouterr().err
    assert rc == 3 and "leads outside the install root" in err and "Traceback" not in err, err


def test_an_include_name_with_a_nul_or_control_character_is_refused(tmp_path, capsys):
    """Review: ``Include a\\x00b`` was a traceback (``ValueError: embedded null byte``)."""
    for i, name in enumerate(("a\x00b.conf", "a\x1bb.conf")):
        rc, _ = _install(tmp_path / str(i), f"Include {name}\n")
        err = capsys.readouterr().err
        assert rc == 3 and "control characters" in err and "Traceback" not in err, err


def test_glob_include_is_kept_unread(tmp_path, capsys):
    rc, gres = _install(tmp_path, "Include /etc/slurm/gres.d/*.conf\n")
    out = capsys.readouterr().out
    assert rc == 0 and "Include /etc/slurm/gres.d/*.conf" in gres.read_text()
    assert "not read: slurmd expands no glob" in out, out
