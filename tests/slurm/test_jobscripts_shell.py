"""jobscripts/*.sbatch run by bash without a cluster: `srun` and the fabric command are stubs that
log their arguments, so the scripts' own logic (what they run, when, and on which signals) is tested
on every machine (tests/slurm_integration/test_jobscripts.py runs them on a live cluster)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.test_train_workers import _wait_for_handler

REPO = Path(__file__).resolve().parents[2]

_LOGGER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [[ " $* " == *" ckpt show "* ]]; then  # the CLI's indented JSON: ckpt_restore reads the step
  printf '{\n  "path": "ck/step-0000000005",\n  "step": 5\n}\n'
fi
if [[ "$1 $2" == "infer prepare" ]]; then  # write the config prepare would write
  while [[ $# -gt 0 ]]; do [[ "$1" == --config-out ]] && echo '{}' > "$2"; shift; done
fi
"""


# a srun whose "ranks" run until signalled, like the trainers: logs the signal, exits 0
_RANKS = """#!/bin/bash
trap 'echo "srun got USR1" >> "$STUB_LOG"; exit 0' USR1
trap 'echo "srun got TERM" >> "$STUB_LOG"; exit 0' TERM
echo $$ > "$STUB_LOG.pid"
echo "srun $*" >> "$STUB_LOG"
while true; do sleep 0.05; done
"""


def _stubs(tmp_path: Path, srun: str = _LOGGER) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", srun), ("fabric", _LOGGER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "log")}


def _infer_batch(tmp_path: Path, env: dict[str, str], **extra: str) -> list[str]:
    (tmp_path / "log").unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / "infer_batch.sbatch")], capture_output=True, text=True,
                          env={**env, "ENGINE_CONFIG": str(tmp_path / "engine.json"), "INPUT": "spool",
                               "OUTPUT": "out", "CKPT": "ck", **extra}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "log").read_text().splitlines()


def test_infer_batch_prepares_once_and_a_rerun_keeps_the_pinned_step(tmp_path: Path) -> None:
    """Every submission ran `fabric infer prepare` without --step: a rerun after training saved a
    newer step resumed OUTPUT with the newer weights. A rerun now keeps ENGINE_CONFIG."""
    env = _stubs(tmp_path)
    first = _infer_batch(tmp_path, env)
    assert [line.split()[:4] for line in first] == [
        ["fabric", "infer", "prepare", "--checkpoint"], ["fabric", "infer", "run", "--preflight"],
        ["srun", "--mpi=pmi2", "--kill-on-bad-exit=1", "--wait=60"], ["fabric", "infer", "merge", "--input"]]
    assert "--step" not in first[0]
    # `--` before the user's paths: one beginning with '-' is still a path, not an option
    assert first[0].split()[-2:] == ["--", str(tmp_path / "engine.engine")] and first[3].endswith(" -- out")
    rerun = _infer_batch(tmp_path, env)
    assert not [line for line in rerun if "infer prepare" in line] and len(rerun) == 3
    pinned = _infer_batch(tmp_path, env, CKPT_STEP="3")  # an explicit step is prepared (and checked by run)
    assert "infer prepare" in pinned[0] and "--step 3" in pinned[0]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_train_gang_forwards_the_time_limit_and_the_preemption_signal(tmp_path: Path, sig: int) -> None:
    """SIGUSR1 (--signal=B:USR1@120, the time limit) was forwarded to srun; a SIGTERM (a preemption,
    or the end of its GraceTime) killed the script without telling the ranks. Both are forwarded now,
    and the script exits with srun's status once the ranks have saved."""
    # FABRIC_PYTHON: the script runs its start checks (fabric_hpc.slurm.train_check) before srun
    env = {**_stubs(tmp_path, srun=_RANKS), "FABRIC_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen(["bash", str(REPO / "jobscripts" / "train_gang.sbatch")], stdout=out,
                                stderr=subprocess.STDOUT, env={**env, "FABRIC_CKPT_DIR": str(tmp_path / "ck")})
    try:
        _wait_for_handler(proc.pid, signal.SIGUSR1)  # the script's traps are set (both, or USR1 alone before)
        deadline = time.monotonic() + 30
        while not (tmp_path / "log").is_file() and time.monotonic() < deadline:  # srun started
            time.sleep(0.01)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, (tmp_path / "out").read_text()
    finally:  # the stub srun of a failed run would go on forever
        pid = (tmp_path / "log.pid").read_text().strip() if (tmp_path / "log.pid").is_file() else ""
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                os.kill(int(pid), signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    name = signal.Signals(sig).name.removeprefix("SIG")
    assert f"srun got {name}" in (tmp_path / "log").read_text()
    assert f"SIG{name}: asking the ranks" in (tmp_path / "out").read_text()


@pytest.mark.parametrize("script", ["ckpt_restore", "infer_batch", "train_gang"])
def test_a_missing_fabric_command_is_named_up_front(tmp_path: Path, script: str) -> None:
    """Without `fabric` on PATH (FABRIC unset) ckpt_restore and infer_batch failed with a bare 127 at
    their first command; now each script checks its command first and names the variable to set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(_LOGGER)
    (bin_dir / "srun").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(tmp_path / "log"), "CKPT": "ck",
           "ENGINE_CONFIG": str(tmp_path / "e.json"), "INPUT": "spool", "OUTPUT": "out",
           "HOME": str(tmp_path)}
    if script == "train_gang":
        env["FABRIC_PYTHON"] = str(tmp_path / "no-such-python")
    proc = subprocess.run(["bash", str(REPO / "jobscripts" / f"{script}.sbatch")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 127, proc.stderr
    assert "is not a command here" in proc.stderr and "FABRIC_PYTHON" in proc.stderr, proc.stderr
    assert ("set FABRIC to the fabric command" in proc.stderr) == (script != "train_gang")
    assert not (tmp_path / "log").exists()  # nothing ran
    if script != "train_gang":  # FABRIC_PYTHON, as train_gang.sbatch takes it, works for the others too
        py = bin_dir / "py"
        py.write_text(_LOGGER)
        py.chmod(0o755)
        proc = subprocess.run(["bash", str(REPO / "jobscripts" / f"{script}.sbatch")], capture_output=True,
                              text=True, env={**env, "FABRIC_PYTHON": str(py)}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = (tmp_path / "log").read_text().splitlines()
        assert lines[0] == "py -c import fabric_hpc.cli", lines  # it imports fabric_hpc (else exit 127)
        first = lines[1]
        assert first.startswith("py -m fabric_hpc.cli ") or first.startswith("srun --mpi=pmi2 "), first
