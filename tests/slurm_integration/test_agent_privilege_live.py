"""On live Slurm: an agent whose user may not modify other users' jobs stops at once with the fix
(exit 3), instead of failing every cycle while `agent status` says all is well; a stopped agent
releases its pins."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from fabric_hpc.slurm.actions import AgentPrivilegeError  # noqa
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.cli_backend import CliClient

pytestmark = [pytest.mark.slurm]


class AsNobody(CliClient):
    """The cli backend whose actions run as the unprivileged user nobody (reads as root)."""

    def run(self, argv, stdin=None, *, cwd=None):  # type: ignore[override]
        if list(argv)[:2] in (["scontrol", "update"], ["scontrol", "requeue"]):
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        return super().run(argv, stdin, cwd=cwd)


def test_an_agent_that_may_not_modify_jobs_stops_with_the_fix(fabric_cluster, slurm_fabric, tmp_path: Path) -> None:
    conf_dir = Path(tempfile.mkdtemp())  # nobody must read slurm.conf: a copy in a 0755 directory
    try:
        os.chmod(conf_dir, 0o755)
        shutil.copy(fabric_cluster.conf_path, conf_dir / "slurm.conf")
        os.chmod(conf_dir / "slurm.conf", 0o644)
        job = fabric_cluster.sbatch("-N2", "--gres=gpu:8", "--begin=now+600", wrap="sleep 1")  # pending
        client = AsNobody({**fabric_cluster.env, "SLURM_CONF": str(conf_dir / "slurm.conf")})
        agent = Agent(client, slurm_fabric, AgentConfig(state_dir=str(tmp_path / "state"), interval_s=0.2))
        with pytest.raises(AgentPrivilegeError) as exc:
            agent.run(max_cycles=5)
        assert exc.value.exit_code == 3 and f"job {job}" in exc.value.message
        assert "Invalid user id" in exc.value.message and "AdminLevel=Operator" in exc.value.hint
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)
        fabric_cluster.run(["scancel", "--user", str(os.getuid())], check=False)
