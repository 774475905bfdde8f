"""What the agent reads from a live Slurm besides placement: accounts, QOS, and usage that survives kill -9."""

from __future__ import annotations

import json
import signal
import time

import pytest

from fabric_hpc.slurm.cli_backend import CliClient

pytestmark = [pytest.mark.slurm]


def test_account_and_qos_are_decoded(fabric_cluster):
    jid = fabric_cluster.sbatch("-N1", "--gres=gpu:1", "--hold", "--account=physics", "--qos=urgent", wrap="true")
    try:
        job = CliClient(env=fabric_cluster.env).job(jid)
        shown = fabric_cluster.run(["squeue", "-h", "-j", str(jid), "-o", "%a|%q"]).stdout.strip()
        account, qos = shown.split("|")
        assert job.account == account == "physics"
        # Without slurmdbd, 22.05 drops the QOS (squeue shows none); 25.11 keeps the name while pending
        # (none once running: test_qos_memory_live.py): same as squeue's.
        assert job.qos == ("" if qos in ("(null)", "") else qos)
        assert job.qos in ("urgent", "")
    finally:
        fabric_cluster.run(["scancel", str(jid)], check=False)


def _usage(agent) -> dict:
    try:
        return json.loads((agent.state_dir / "usage.json").read_text())["ledger"]["usage"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}


def _wait(predicate, what: str, agent, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}\n{agent.log()}"
        time.sleep(0.1)


def test_usage_ledger_survives_kill_9(fabric_cluster, agent):
    (agent.state_dir / "usage.json").unlink(missing_ok=True)
    agent.start()
    jid = fabric_cluster.sbatch("-N1", "--gres=gpu:8", "--account=physics", "--comment=fabric", wrap="sleep 60")
    _wait(lambda: _usage(agent).get("physics", 0) > 8.0, "no usage charged to physics", agent)
    agent.stop(signal.SIGKILL)
    saved = _usage(agent)["physics"]
    time.sleep(1.0)
    agent.start()
    agent.wait_cycles(2)
    after = _usage(agent)
    # Rebuilt from the file, not from zero: the gap while the agent was dead is charged too (8 GPUs held).
    assert after["physics"] >= saved + 8 * 1.0 - 1e-6, (saved, after)
    assert set(after) == {"physics"}
    fabric_cluster.run(["scancel", str(jid)], check=False)
