"""Slurm's own commands pointed at a controller that is not there: one error with a fix, on every
tier of the matrix (22.05 answers exit 0 with an ``errors`` list; 25.11 exits 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.decode import answer
from tests.slurm_matrix import TIERS, require_install


def _dead_conf(tmp_path: Path) -> Path:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=gone\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={port}\n"
                    "MessageTimeout=2\nAuthType=auth/none\nCredType=cred/none\n"
                    "NodeName=n1 CPUs=1\nPartitionName=p Nodes=n1\n")
    return conf


@pytest.mark.parametrize("tier", TIERS, ids=[t.id for t in TIERS])
def test_no_controller_is_one_error_with_a_fix(tier, tmp_path: Path) -> None:
    require_install(tier.install)
    client = CliClient({"SLURM_CONF": str(_dead_conf(tmp_path)), "PATH": tier.install.path()}, timeout=30)
    with pytest.raises(SlurmError) as err:
        client.jobs()
    assert "scontrol ping" in (err.value.hint or ""), (err.value.message, err.value.hint)
    assert "{'" not in err.value.message  # Slurm's errors in words, not a Python repr


def test_errors_list_in_words_and_cut_short() -> None:
    errors = [{"description": "Failed while looking for jobs", "error": "Unspecified error", "source": "x"}] * 5
    with pytest.raises(SlurmError) as err:
        answer({"errors": errors}, "squeue --json")
    assert err.value.message == ("squeue --json reported errors: " + "; ".join(
        ["Failed while looking for jobs: Unspecified error (in x)"] * 3) + "; and 2 more")
    with pytest.raises(SlurmError) as err:
        answer({"errors": [{"error": "e" * 10_000}, 7]}, "sinfo --json")
    assert len(err.value.message) < 500 and err.value.message.endswith("; 7")
