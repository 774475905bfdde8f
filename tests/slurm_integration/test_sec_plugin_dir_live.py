"""A `<state_dir>.plugin/` another user made (here uid 65534), with `wake` a symbolic link to a file of
root's: the agent wrote its heartbeat there, so job_submit.lua (slurmctld) took it for alive and, for
each fabric job it deferred, rewrote `wake` -- through the link, truncating the victim. The agent now
refuses that directory (agent.error naming it): the plugin sees no heartbeat and writes nothing.
Unit tests: tests/slurm/test_sec_plugin_dir.py."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from fabric_hpc.slurm.plugins import plugin_dir
from tests.real import require_real

pytestmark = [pytest.mark.slurm]


def test_no_heartbeat_into_another_users_plugin_dir(fabric_cluster, agent, tmp_path):
    require_real("slurm", os.geteuid() == 0, "chown to another user needs root")
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    pd = plugin_dir(agent.state_dir)
    shutil.rmtree(pd, ignore_errors=True)
    pd.mkdir(mode=0o755)
    (pd / "wake").symlink_to(victim)
    os.lchown(pd / "wake", 65534, 65534)
    os.chown(pd, 65534, 65534)
    try:
        agent.start(wait=False)
        log = agent.state_dir / "decisions.jsonl"
        deadline = time.monotonic() + 30
        while not (log.exists() and "the job_submit plugin's directory" in log.read_text()):
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.2)
        errors = [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "agent.error"]
        assert "owned by uid 65534" in errors[-1]["error"] and "fabric slurm install" in errors[-1]["hint"]
        sub = fabric_cluster.run(["sbatch", "--parsable", "-N2", "--gres=gpu:8", "--comment=fabric",
                                  "--wrap", "sleep 5"])
        assert "the placement agent is not running" in sub.stderr, sub.stderr
        assert victim.read_text() == "root's own file\n"
        assert not (pd / "heartbeat").exists()
    finally:
        agent.stop()
        shutil.rmtree(pd, ignore_errors=True)
