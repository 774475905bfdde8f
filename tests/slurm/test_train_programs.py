"""The job scripts' training programs (train_demo, train_tiny) on predictable failures: one error line
and the CLI's exit code, never a traceback; RESTORE_STEP (--restore-step) resumes from an older step
when the newest is damaged; a second run in a checkpoint directory in use refuses at its start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO, TINY = "fabric_hpc.slurm.train_demo", "fabric_hpc.inference.engines.train_tiny"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _train(module: str, ckpt: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, "--ckpt-dir", str(ckpt), "--step-seconds", "0",
                           *args], capture_output=True, text=True, env=_env(**env), timeout=300)


def _report(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exit ``code``, no traceback, an error line (and its fix line) that names ``words``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    return proc.stderr


def _damage(ckpt: Path, step: int) -> None:
    chunks = sorted((ckpt / f"step-{step:010d}").rglob("c*"))
    chunk = next(p for p in chunks if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF
    chunk.write_bytes(bytes(data))


@pytest.mark.parametrize("module", [DEMO, TINY])
def test_a_damaged_newest_step_is_one_error_and_restore_step_resumes(tmp_path: Path, module: str) -> None:
    """A damaged newest step was a raw CheckpointCorruptError traceback, and train_gang.sbatch had no
    way to pick an older step. Now: exit 3, one error naming `fabric ckpt verify` and RESTORE_STEP;
    --restore-step resumes from the good step, and a requeued run of the same job resumes from its
    own newer save (not RESTORE_STEP again)."""
    ck = tmp_path / "ck"
    _report(_train(module, ck, "--steps", "2", SLURM_JOB_ID="40"))
    _report(_train(module, ck, "--steps", "4", SLURM_JOB_ID="41"))
    _damage(ck, 4)
    _one_error(_train(module, ck, "--steps", "6"), 3, "damaged chunk", "fabric ckpt verify", "RESTORE_STEP")
    first = _report(_train(module, ck, "--steps", "3", "--restore-step", "2", SLURM_JOB_ID="42"))
    assert (first["restored_step"], first["saved"]) == (2, 3)
    # the damaged step 4 lies within the requeued run's steps: moved aside first (test_train_restore_probe.py)
    _one_error(_train(module, ck, "--steps", "5", "--restore-step", "2", SLURM_JOB_ID="42"), 3, "step(s) 4")
    (ck / "step-0000000004").rename(tmp_path / "step-0000000004")
    again = _report(_train(module, ck, "--steps", "5", "--restore-step", "2", SLURM_JOB_ID="42"))  # requeued
    assert (again["restored_step"], again["saved"]) == (3, 5)
    other = _report(_train(module, ck, "--steps", "3", "--restore-step", "3", SLURM_JOB_ID="43"))
    assert (other["restored_step"], other["saved"]) == (3, None)  # nothing to do: already at step 3
    _one_error(_train(module, ck, "--restore-step", "7"), 3, "--restore-step (RESTORE_STEP) 7", "2, 3, 5")


@pytest.mark.parametrize(("module", "args", "env", "code", "words"), [
    (DEMO, ["--step-seconds", "-1"], {}, 2, ["--step-seconds", "-1 is not 0 or more seconds"]),
    (DEMO, ["--step-seconds", "nan"], {}, 2, ["--step-seconds"]),
    (DEMO, ["--steps", "-5"], {}, 2, ["--steps", "negative"]),
    (DEMO, ["--steps", "ten"], {}, 2, ["--steps", "whole number"]),
    (DEMO, [], {"SLURM_PROCID": "abc"}, 3, ["SLURM_PROCID='abc'"]),
    (DEMO, [], {"SLURM_PROCID": "-1"}, 3, ["SLURM_PROCID='-1'"]),
    # train_tiny reads its flags and variables through the same trainer.py: one case each kind
    # (each of its runs imports torch)
    (TINY, ["--step-seconds", "-1"], {}, 2, ["--step-seconds", "-1 is not 0 or more seconds"]),
    (TINY, [], {"SLURM_PROCID": "abc"}, 3, ["SLURM_PROCID='abc'"]),
])
def test_bad_values_name_the_flag_or_variable(tmp_path: Path, module: str, args: list[str],
                                              env: dict[str, str], code: int, words: list[str]) -> None:
    """STEP_SECONDS=-1 was `ValueError: sleep length must be non-negative`, SLURM_PROCID=abc a bare
    ValueError: now a usage error (2) naming the flag, or a bad-input error (3) naming the variable."""
    proc = _train(module, tmp_path / "ck", "--steps", "3", *args, **env)
    _one_error(proc, code, *words)
    assert not (tmp_path / "ck" / "step-0000000003").exists()


@pytest.mark.parametrize("module", [DEMO, TINY])
def test_a_file_as_checkpoint_directory_is_one_error(tmp_path: Path, module: str) -> None:
    """--ckpt-dir naming a file was a FileExistsError traceback."""
    (tmp_path / "f").write_text("not a directory")
    f = tmp_path / "f"
    _one_error(_train(module, f, "--steps", "1"), 3, "--ckpt-dir", str(f), "is a file")
    _one_error(_train(module, f / "sub", "--steps", "1"), 3, "--ckpt-dir", "a directory was expected")


def test_a_second_run_in_a_directory_in_use_refuses_at_its_start(tmp_path: Path) -> None:
    """Two jobs with the same -J (one checkpoint directory) both started at step 0 and the second
    crashed later with `CheckpointError: checkpoint for step 40 already exists`. Rank 0 now locks the
    directory for its run: the second refuses at its start, naming the directory and the holder."""
    ck = tmp_path / "ck"
    first = subprocess.Popen([sys.executable, "-m", DEMO, "--ckpt-dir", str(ck), "--steps", "100000",
                              "--step-seconds", "0.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(SLURM_JOB_ID="51"))
    try:
        deadline = time.monotonic() + 60
        while "started" not in (first.stdout.readline() if first.stdout else ""):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr and first.stderr.read()
        second = _train(DEMO, ck, "--steps", "5", SLURM_JOB_ID="52")
        _one_error(second, 3, f"checkpoint directory {ck} is in use", "job 51", "--job-name")
        rank1 = _report(_train(DEMO, ck, "--steps", "2", SLURM_PROCID="1"))  # ranks > 0 never write: no lock
        assert rank1["saved"] is None
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert first.returncode == 0 and report["signal"] == "SIGTERM" and report["requeueing"] is False, err
    assert report["saved"] == report["step"] > 0
    after = _report(_train(DEMO, ck, "--steps", str(report["step"] + 1)))  # its lock went with it
    assert (after["restored_step"], after["saved"]) == (report["step"], report["step"] + 1)


def test_a_time_limit_signal_before_the_first_step_is_an_error_not_a_requeue(tmp_path: Path) -> None:
    """A SIGUSR1 before the run's first step (a --time within --signal's 120 s lead) would requeue the
    job, and the requeued run would get the signal before its first step again: forever, no progress.
    It ends with an error naming the time limit instead (scontrol is never reached)."""
    from tests.slurm.test_train_workers import _wait_for_handler

    proc = subprocess.Popen([sys.executable, "-m", DEMO, "--ckpt-dir", str(tmp_path / "ck"), "--steps",
                             "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(SLURM_JOB_ID="61", PATH="/nonexistent"))  # no scontrol either
    _wait_for_handler(proc.pid, signal.SIGUSR1)  # the early handler, installed before the imports
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    _one_error(done, 3, "before this run's first step", "--time")
    assert json.loads(out.strip().splitlines()[-1])["requeueing"] is False
