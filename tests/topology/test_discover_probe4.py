"""Discovery from the fourth admin probe: a damaged NUMA meminfo or CPU package id is refused (exit 3,
naming the file and the fix), like a damaged cpulist, instead of silently halving the host's
memory or putting every CPU on socket 0; `fabric topology discover --hostname` exists, and the
hint for an odd host name points at it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.discover import discover

FIXTURE = Path(__file__).parent / "fixtures" / "dgx-h100"


@pytest.fixture
def sd(tmp_path) -> Path:
    root = tmp_path / "sd"
    shutil.copytree(FIXTURE, root, symlinks=True)
    return root


def _discover(root: Path, out: Path, *extra: str) -> int:
    return main(["topology", "discover", "--sysfs-root", str(root), "--no-nvml", "-o", str(out), *extra])


def _memory_gb(out: Path) -> float:
    spec = yaml.safe_load(out.read_text())
    (ht,) = spec["host_types"].values()
    return ht["memory_gb"]


def test_intact_tree_counts_both_numa_nodes(sd, tmp_path, capsys):
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "dgx01") == 0
    assert _memory_gb(tmp_path / "out.yaml") == pytest.approx(2015.39, abs=0.01)


@pytest.mark.parametrize("text", ["Node 0 MemTotal: -5 kB\n", "garbage\n", ""])
def test_a_damaged_numa_meminfo_is_refused_naming_the_file(sd, tmp_path, capsys, text):
    (sd / "sys/devices/system/node/node0/meminfo").write_text(text)
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "dgx01") == 3
    err = capsys.readouterr().err
    assert "node0/meminfo" in err and "MemTotal" in err and "--sysfs-root" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.yaml").exists()


def test_a_damaged_package_id_is_refused_naming_the_file(sd, tmp_path, capsys):
    (sd / "sys/devices/system/cpu/cpu3/topology/physical_package_id").write_text("abc\n")
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "dgx01") == 3
    err = capsys.readouterr().err
    assert "cpu3/topology/physical_package_id" in err and "'abc'" in err and "--sysfs-root" in err


def test_a_damaged_proc_meminfo_without_numa_nodes_is_refused(sd, tmp_path, capsys):
    shutil.rmtree(sd / "sys/devices/system/node")
    (sd / "proc/meminfo").write_text("MemTotal: lots\n")
    with pytest.raises(ConfigError, match="proc/meminfo"):
        discover(root=sd, use_nvml=False, hostname="dgx01")


def test_hostname_option_names_the_host(sd, tmp_path, capsys):
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "gpu-a17.example.org") == 0
    spec = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert [h["names"] for h in spec["hosts"]] == ["gpu-a17"]


def test_an_odd_host_name_hint_names_the_cli_option(sd, tmp_path, capsys):
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "bad name!") == 3
    err = capsys.readouterr().err
    assert "--hostname" in err
    with pytest.raises(ConfigError) as exc:
        discover(root=sd, use_nvml=False, hostname="bad name!")
    assert "--hostname" in str(exc.value.hint) and "hostname=" in str(exc.value.hint)


# -- --record, from a review: checked as every output is ---------------------------------------------------


def test_a_record_to_a_standard_stream_is_refused_and_the_link_kept(sd, tmp_path, capsys):
    """``--record`` skipped the output check: as root, ``--record /dev/stdout`` renamed the recording over
    the node's /dev/stdout. The test goes through a link of its own (a regression replaces that link)."""
    link = tmp_path / "rec.json"
    link.symlink_to("/dev/stdout")
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "dgx01", "--record", str(link)) == 3
    assert "not a standard stream" in capsys.readouterr().err and link.is_symlink()


def test_a_record_creates_no_directories_and_a_refused_host_writes_none(sd, tmp_path, capsys):
    deep = tmp_path / "typo" / "deep" / "r.json"
    assert _discover(sd, tmp_path / "out.yaml", "--hostname", "dgx01", "--record", str(deep)) != 0
    assert not (tmp_path / "typo").exists()
    (sd / "sys/devices/system/node/node0/meminfo").write_text("garbage\n")
    rec = tmp_path / "r.json"
    assert _discover(sd, tmp_path / "out2.yaml", "--hostname", "dgx01", "--record", str(rec)) == 3
    assert not rec.exists()
