"""One user's job name or comment that is not UTF-8 (`sbatch -J $'bad\\xff'`, `--comment=$'x\\xff'`: Slurm
keeps the bytes and `squeue --json` hands them on) stopped every cycle of the agent (UnicodeDecodeError
reading the answer: no job of anyone placed until that job left the queue), and `fabric slurm why` ended
in a traceback on 22.05. The cli backend reads Slurm's answers as UTF-8 with U+FFFD for a bad byte, as the
rest backend does."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.slurm_integration.conftest import REPO

pytestmark = [pytest.mark.slurm]

BAD_NAME = "bad\udcff\udcfename"  # os.fsencode: b"bad\xff\xfename" on sbatch's command line
BAD_COMMENT = "x\udcffy"


def _fabric(cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *argv],
                          env={**cluster.env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, errors="replace", timeout=120)


def _state(cluster, jid: int) -> str:
    out = subprocess.run(["squeue", "-h", "-j", str(jid), "-o", "%T"], env=cluster.env, capture_output=True)
    return out.stdout.decode(errors="replace").strip()


def test_a_name_that_is_not_utf8_stops_no_cycle(fabric_cluster, agent):
    c = fabric_cluster
    bad = c.run(["sbatch", "--parsable", "-N1", "-J", BAD_NAME, f"--comment={BAD_COMMENT}",
                 "--begin=now+3600", "--wrap", "sleep 30"])
    bad_id = int(bad.stdout.strip().split(";")[0])
    agent.start()
    gang = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 30")
    deadline = time.monotonic() + 30
    while _state(c, gang) != "RUNNING":
        assert time.monotonic() < deadline, f"the fabric gang was not placed:\n{agent.log()}"
        time.sleep(0.2)
    status = json.loads((agent.state_dir / "status.json").read_text())
    assert status["errors"] == 0 and status["last_error"] is None, status
    placed = [json.loads(line) for line in (agent.state_dir / "decisions.jsonl").read_text().splitlines()]
    assert any(e["event"] == "agent.place" and e["job"] == gang for e in placed), placed[-5:]

    why = _fabric(c, "slurm", "why", str(bad_id), "--state-dir", str(agent.state_dir))
    assert why.returncode == 0 and "Traceback" not in why.stderr, why.stderr[-2000:]
    assert f"Job {bad_id} (" in why.stdout and "pending" in why.stdout, why.stdout
    shown = _fabric(c, "slurm", "why", str(bad_id), "--json", "--state-dir", str(agent.state_dir))
    assert shown.returncode == 0 and json.loads(shown.stdout)["job"] == bad_id, shown
