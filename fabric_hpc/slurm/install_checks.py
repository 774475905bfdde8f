"""Checks ``fabric slurm install`` (and ``fabric agent check``) make of the host before anything is
written: that ``[install] python`` imports fabric_hpc (the TaskProlog's and Prolog's ``#!`` line and the
unit's ExecStart name it), and that nothing the agent's unit must see lies in a /tmp the unit's
``PrivateTmp=yes`` hides from it."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child
from fabric_hpc.slurm.deploy_config import DeployConfig

#: Seconds the interpreter has to import fabric_hpc (a cold start on a network file system is slow).
IMPORT_TIMEOUT_S = 60
#: The directories systemd's PrivateTmp=yes replaces with the unit's own (systemd.exec(5)).
PRIVATE_TMP = ("/tmp", "/var/tmp")


def _fix(python: str) -> str:
    return (f"install the fabric-hpc wheel into that interpreter ({python} -m pip install fabric_hpc-*.whl), "
            "or set [install] python to one that has it (its default: the python running install)")


def _imports(python: str | os.PathLike[str]) -> tuple[str | None, str]:
    """(why ``python -I -c 'import fabric_hpc'`` fails, or None when it imports; the fabric_hpc version
    it imports, "" when none). Run from /, no shell, no PYTHON* variables: as the unit and slurmd would
    run it."""
    if not os.path.isfile(python):
        return ("does not exist" if not os.path.lexists(python) else "is not a file"), ""
    code = "import sys, fabric_hpc; sys.stdout.write(str(fabric_hpc.__version__))"
    try:
        proc = run_child([python, "-I", "-c", code], IMPORT_TIMEOUT_S, cwd="/")
    except ChildTimeout:
        return f"did not import fabric_hpc within {IMPORT_TIMEOUT_S} s", ""
    except ChildNotStarted as exc:
        return f"cannot run: {exc.reason}", ""
    if proc.returncode == 0:
        return None, proc.stdout.strip()[:64]
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return f"cannot import fabric_hpc ({last})", ""


def check_python(python: str, root: str | os.PathLike[str] = "/") -> list[str]:
    """ConfigError when the interpreter the installed scripts and unit name cannot import fabric_hpc.
    With a staging ``root`` (not /): ``<root>/<python>`` is checked where it exists; else the
    returned warning says it was not."""
    where = Path(root) / python.lstrip("/")
    if Path(root).resolve() != Path("/") and not os.path.lexists(where):
        return [f"install.python {python} is not under --root {root}: not checked that it imports "
                "fabric_hpc (on the cluster, `fabric agent check` checks it)"]
    problem, version = _imports(where)
    if problem:
        raise ConfigError(f"install.python {python}{f' ({where})' if where != Path(python) else ''} "
                          f"{problem}: the TaskProlog, the Prolog and the agent's unit would run it",
                          hint=_fix(python))
    from fabric_hpc import __version__

    if version != __version__:  # the files written now, run by another release's code
        return [f"install.python {python} imports fabric_hpc {version or '(no version)'}, this fabric is "
                f"{__version__}: the TaskProlog, the Prolog and the agent's unit would run {version}; "
                f"{_fix(python)}"]
    return []


def _in_private_tmp(path: str) -> str | None:
    p = posixpath.normpath(path)
    return next((t for t in PRIVATE_TMP if p == t or p.startswith(t + "/")), None)


def check_private_tmp(cfg: DeployConfig, root: str | os.PathLike[str] = "/") -> None:
    """ConfigError when a path the agent's unit needs lies under /tmp or /var/tmp on a real install
    (root /) whose unit systemd will load: the unit has PrivateTmp=yes, so the agent would see an
    empty /tmp of its own (its heartbeat there, job_submit.lua would take it for dead). A unit_dir
    itself under /tmp (a test tree systemd never loads) is not checked."""
    i, a = cfg.install, cfg.agent
    if Path(root).resolve() != Path("/") or _in_private_tmp(i.unit_dir):
        return
    for key, value in (("install.python", i.python), ("agent.state_dir", a.state_dir),
                       ("agent.rest_token_file", a.rest_token_file)):
        if value and (tmp := _in_private_tmp(value)):
            raise ConfigError(f"{key} {value} is under {tmp}: the agent's unit has PrivateTmp=yes, so the "
                              f"agent would see its own empty {tmp}, not this path",
                              hint=f"give {key} a path outside /tmp and /var/tmp (docs/deploy.md)")
