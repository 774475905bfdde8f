"""Running the real CLI in-process on hostile input and checking the contract of a user mistake."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

from fabric_hpc.cli.main import main

#: Exit codes a malformed input may end with (usage, bad input, infeasible, external).
USER_ERROR_CODES = {2, 3, 4, 5}


def snapshot(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files} | \
        {os.path.relpath(d, root) for d, _, _ in os.walk(root)}


class Hang(Exception):
    """An example ran past its deadline (the hang guard)."""


@contextmanager
def deadline(seconds: float):
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""
    def fire(signum, frame):  # noqa: ARG001
        raise Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv: list[str], capsys, *, cwd: Path, allowed_new: tuple[str, ...] = (),
            allow_ok: bool = False, seconds: float = 20.0) -> tuple[int, str]:
    """Run ``fabric ARGV`` in ``cwd``; assert the user-mistake contract; return (code, stdout+stderr)."""
    before = snapshot(cwd)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with deadline(seconds):
            code = main(argv)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    err = out.err
    assert "Traceback" not in err and "Traceback" not in out.out, f"fabric {argv}: traceback\n{err}"
    if allow_ok and code == 0:
        return code, out.out + err
    assert code in USER_ERROR_CODES, f"fabric {argv}: exit {code}, expected a user error\n{out.out}\n{err}"
    assert err.strip(), f"fabric {argv}: no message on stderr"
    new = {p for p in snapshot(cwd) - before if not any(p.startswith(a) for a in allowed_new)}
    assert not new, f"fabric {argv}: created {sorted(new)} outside its output path"
    return code, out.out + err
