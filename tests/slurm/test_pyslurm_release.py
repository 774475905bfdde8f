"""pyslurm against a slurmctld of another release (admin probe 7: "pyslurm load nodes failed: Zero Bytes
were transmitted or received, fix: is slurmctld up?" on a 22.05 cluster): the words say that pyslurm
25.11 needs Slurm 25.11 and name the cli and rest backends; after a failed RPC one ``scontrol
--version`` (the real Slurm 22.05 and 25.11 commands) tells whether this cluster is of another release.
Live: tests/slurm_integration/test_pyslurm_release_live.py."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from fabric_hpc.slurm.pyslurm_backend import PyslurmClient, release, unreachable_hint
from fabric_hpc.testing._installs import read_version, version_text
from tests.real import require_real

PYSLURM = SimpleNamespace(__version__="25.11.2")  # the attribute of the pyslurm module read here


def test_the_release_is_the_first_two_numbers() -> None:
    assert release(PYSLURM) == "25.11"
    assert release(SimpleNamespace(__version__="x")) is None and release(object()) is None


def test_the_hint_says_which_slurm_pyslurm_needs_and_names_the_other_backends() -> None:
    hint = unreachable_hint(PYSLURM)
    assert "is slurmctld up?" in hint and "pyslurm 25.11.2 needs Slurm 25.11" in hint
    assert 'backend = "cli" or "rest"' in hint


@pytest.mark.parametrize("scontrol, said", [("/usr/bin/scontrol", "Debian's: 22.05 or 24.11"),
                                            ("/opt/slurm-25.11/bin/scontrol", "")])
def test_a_failed_rpc_names_a_slurm_of_another_release(scontrol: str, said: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    require_real("slurm", Path(scontrol).exists(), f"{scontrol} is not installed")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\nSlurmctldHost=localhost\n")  # scontrol --version reads one
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").symlink_to(scontrol)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    client = object.__new__(PyslurmClient)  # no pyslurm import: its version is all this reads
    client.ps = PYSLURM
    text = client._release_mismatch()
    if said:
        debian = version_text(read_version("/usr/sbin/slurmctld")[:2])  # Debian 12: 22.05, Debian 13: 24.11
        assert text.startswith(f" (pyslurm 25.11.2 talks to Slurm 25.11 only; this Slurm is {debian}.")
        assert "scontrol --version" in text
    else:
        assert text == ""
