"""Running the real CLI in-process on hostile input and checking the contract of a user mistake."""

from __future__ import annotations

import os
from pathlib import Path

from fabric_hpc.cli.main import main

#: Exit codes a malformed input may end with (usage, bad input, infeasible, external).
USER_ERROR_CODES = {2, 3, 4, 5}


def snapshot(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files} | \
        {os.path.relpath(d, root) for d, _, _ in os.walk(root)}


def run_cli(argv: list[str], capsys, *, cwd: Path, allowed_new: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run ``fabric ARGV`` in ``cwd``; assert the user-mistake contract; return (code, stdout+stderr)."""
    before = snapshot(cwd)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    err = out.err
    assert "Traceback" not in err and "Traceback" not in out.out, f"fabric {argv}: traceback\n{err}"
    assert code in USER_ERROR_CODES, f"fabric {argv}: exit {code}, expected a user error\n{out.out}\n{err}"
    assert err.strip(), f"fabric {argv}: no message on stderr"
    new = {p for p in snapshot(cwd) - before if not any(p.startswith(a) for a in allowed_new)}
    assert not new, f"fabric {argv}: created {sorted(new)} outside its output path"
    return code, out.out + err
