"""SRE probe: ``fabric infer run --textfile-dir`` started by hand (outside Slurm, or ``srun --pty``) died at
once on SIGHUP (the ssh session or terminal went away): no ``infer.finish``, no ``cli.error``, and its
``.prom`` file stayed in the node-exporter directory, so Prometheus exported the dead run's frozen series
for good (outside Slurm no epilog removes it). SIGHUP now stops a command as SIGTERM does (exit 129,
``terminated (SIGHUP)``), and a SIGHUP that ``nohup`` ignores stays ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .builders import make_config, random_items, write_spool
from .test_textfile_runs import ENV


def _start(tmp: Path, *, ignore_hup: bool) -> tuple[subprocess.Popen, Path]:
    cfg, textfiles = make_config(tmp), tmp / "textfile"
    textfiles.mkdir()
    spool = write_spool(tmp, random_items(20000, max_new=8), files=1)
    env = {k: v for k, v in ENV.items() if not k.startswith("SLURM_")}

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def hup_default() -> None:  # a run under nohup (a CI started so) passes SIGHUP on ignored
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "fabric_hpc.cli", "-v", "infer", "run", "--engine-config",
                             str(cfg), "--no-progress", "--textfile-dir", str(textfiles),
                             "--input", str(spool),
                             "--output", str(tmp / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=nohup if ignore_hup else hup_default)
    deadline = time.monotonic() + 120
    while not any(p.suffix == ".prom" for p in textfiles.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    return proc, textfiles


def test_sighup_removes_the_textfile_and_says_why(tmp_path: Path) -> None:
    proc, textfiles = _start(tmp_path, ignore_hup=False)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 129, err.decode()[-2000:]
    assert list(textfiles.iterdir()) == []                       # no frozen series left to export
    finish = [e for e in events if e["event"] == "infer.finish"]
    assert finish and finish[0]["exit_code"] == 129
    error = [e for e in events if e["event"] == "cli.error"]
    assert error and error[0]["exit_code"] == 129 and error[0]["error"] == "terminated (SIGHUP)"


def test_a_sighup_nohup_ignores_stays_ignored(tmp_path: Path) -> None:
    proc, textfiles = _start(tmp_path, ignore_hup=True)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert list(textfiles.iterdir()) == []
    assert json.loads((tmp_path / "out" / "run.json").read_text())  # the run went on to its end
