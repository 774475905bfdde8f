"""Which Slurm a test cluster runs (fabric_hpc.testing._installs) and the tier it reports."""

from __future__ import annotations

import subprocess

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.testing import SlurmTestCluster
from fabric_hpc.testing._installs import SlurmInstall, installs, prefixes, tier_id, version_text


def test_missing_prefix_never_falls_back_to_the_system_slurm(tmp_path):
    install = SlurmInstall(tmp_path / "slurm-26.05")
    assert install.which("slurmctld") is None and install.which("sbatch") is None
    with pytest.raises(ExternalError, match="no slurmctld"):
        install.version()
    assert not install.available()
    assert tier_id(install) == "slurm-26.05"  # named after the prefix while it does not run
    assert install.path("/usr/bin:/bin").split(":")[:4] == [
        str(tmp_path / "slurm-26.05" / "bin"), str(tmp_path / "slurm-26.05" / "sbin"), "/usr/bin", "/bin"]
    cluster = SlurmTestCluster(1, prefix=install.prefix, base_dir=tmp_path / "c")
    assert cluster.env["PATH"].startswith(f"{install.prefix}/bin:{install.prefix}/sbin:")
    with pytest.raises(ExternalError, match=r"not installed \(Slurm in .*slurm-26.05\): slurmctld"):
        cluster.start()


def test_prefixes_come_from_the_environment():
    assert prefixes({}) == prefixes({"FABRIC_SLURM_PREFIXES": "/opt/slurm-25.11"})
    got = installs({"FABRIC_SLURM_PREFIXES": "/a:/b"})
    assert [i.prefix for i in got] == [None, *prefixes({"FABRIC_SLURM_PREFIXES": "/a:/b"})]
    assert version_text((22, 5, 8)) == "22.05.8" and version_text((25, 11)) == "25.11"


def test_tier_version_is_what_slurmctld_says(require_slurm):
    slurmctld = require_slurm.which("slurmctld")
    said = subprocess.run([slurmctld, "-V"], capture_output=True, text=True, check=True).stdout
    assert said.split()[-1].startswith(version_text(require_slurm.version()))
    if require_slurm.prefix is not None:
        assert slurmctld == f"{require_slurm.prefix}/sbin/slurmctld"
    assert tier_id(require_slurm) == "slurm-" + version_text(require_slurm.version()[:2])
