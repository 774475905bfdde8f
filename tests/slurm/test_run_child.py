"""run_child: the one way the slurm package runs a child process with a deadline (the pyslurm contact
probe, the install checks' interpreter import, ``scontrol show config``/``--version``): a child that
overruns is killed and named, one that cannot be started is named, a stop ends the wait."""

from __future__ import annotations

import copy
import os
import pickle
import sys
import threading
from pathlib import Path

import pytest

from fabric_hpc.errors import ExternalError, exit_code_for
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child


def _sleeper(pid_file: Path) -> list[str]:
    """A child that writes its pid, then sleeps far past any deadline here."""
    return ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"]


def _gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True  # killed and reaped
    return False


def test_a_child_that_overruns_is_killed_and_named(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(ChildTimeout) as caught:
        run_child(_sleeper(pid_file), 2.0)
    command = f"/bin/sh -c 'echo $$ > {pid_file}; exec sleep 600'"
    assert caught.value.message == f"`{command}` did not end within 2 s (killed)"
    assert isinstance(caught.value, ExternalError) and exit_code_for(caught.value) == 5
    assert _gone(pid_file)


def test_a_child_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-program"
    with pytest.raises(ChildNotStarted) as caught:
        run_child([missing, "--version"], 5)
    assert caught.value.message == f"cannot run `{missing} --version`: No such file or directory"
    assert caught.value.hint == "is the program installed, executable and on PATH?"
    assert caught.value.reason == "No such file or directory"
    assert exit_code_for(caught.value) == 5
    for again in (pickle.loads(pickle.dumps(caught.value)), copy.deepcopy(caught.value)):
        assert again.reason == "No such file or directory"


def test_a_program_that_cannot_be_executed_is_named(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(ChildNotStarted) as caught:
        run_child([script], 5)
    assert caught.value.reason == "Permission denied"


def test_a_finished_child_gives_its_status_and_output_whatever_it_is(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff'); sys.stderr.write('bad'); sys.exit(3)"
    done = run_child([sys.executable, "-c", code], 60, cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"})
    assert done is not None
    assert (done.returncode, done.stdout, done.stderr) == (3, "ok \ufffd", "bad")
    where = run_child([sys.executable, "-c", "import os; print(os.getcwd(), os.environ.get('X'))"], 60,
                      cwd=str(tmp_path), env={"X": "y"})
    assert where is not None and where.stdout.split() == [str(tmp_path), "y"]


def test_stop_ends_the_wait_and_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    stop, done = threading.Event(), threading.Event()

    def stop_once_started() -> None:  # the child has written its pid: it runs
        while not pid_file.exists() or not pid_file.read_text().strip():
            if done.wait(0.01):
                return
        stop.set()

    watcher = threading.Thread(target=stop_once_started, daemon=True)
    watcher.start()
    try:
        assert run_child(_sleeper(pid_file), 600, stop=stop) is None
    finally:
        done.set()
        watcher.join()
    assert _gone(pid_file)
