"""A review of what Slurm runs for every job: the root Prolog exits 0 whatever happens (a failing Prolog
drains the node) and said its problems on stderr only, which slurmd logs only at SlurmdDebug=debug2 for a
Prolog that exits 0 (prep_script_slurmd.c); fabric's events (a host without an NCCL topology file) went
to a logger without a handler. Both now go to syslog and stderr. Failed before the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fabric_hpc.slurm.plugins import render_script
from tests.slurm.prolog_site import superpod_site


def _run_prolog(config: Path, tmp_path: Path, host: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prolog.py"
    script.write_text(render_script("prolog.py", config=str(config), python=sys.executable))
    script.chmod(0o755)
    return subprocess.run([str(script)], env={"SLURMD_NODENAME": host, "SLURM_JOB_ID": "5"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_prologs_events_and_failures_are_reported(tmp_path: Path) -> None:
    with superpod_site("fabric-prolog-report-", "hints") as (_fab, base, _cfg):
        done = _run_prolog(base / "prolog.json", tmp_path, "su01-h01")  # no discovery facts for it
        assert done.returncode == 0, done.stderr
        lines = [line.removeprefix("fabric prolog: ") for line in done.stderr.splitlines()]
        events = [json.loads(line) for line in lines if line.startswith("{")]
        assert [e["event"] for e in events] == ["slurm.prolog.no_nccl_topo_file"], done.stderr
        (base / "topology.yaml").write_text("not: a fabric\n")
        done = _run_prolog(base / "prolog.json", tmp_path, "su01-h01")
        assert done.returncode == 0 and "fabric prolog: topology or hints file not written" in done.stderr
