"""Checks ``fabric slurm install`` (and ``fabric agent check``) make of the host before anything is
written: that ``[install] python`` imports fabric_hpc (the TaskProlog's and Prolog's ``#!`` line and the
unit's ExecStart name it), and that nothing the agent's unit must see lies in a /tmp the unit's
``PrivateTmp=yes`` hides from it."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child
from fabric_hpc.slurm.deploy_config import DeployConfig

#: Seconds the interpreter has to import fabric_hpc (a cold start on a network file system is slow).
IMPORT_TIMEOUT_S = 60
#: The directories systemd's PrivateTmp=yes replaces with the unit's own (systemd.exec(5)).
PRIVATE_TMP = ("/tmp", "/var/tmp")
#: The oldest Python fabric-hpc runs on (pyproject.toml's requires-python). RHEL 9's python3 is 3.9
#: and RHEL 8's 3.6: such an interpreter cannot take the wheel at all.
MIN_PYTHON = (3, 11)


def _fix(python: str) -> str:
    return (f"install the fabric-hpc wheel into that interpreter ({python} -m pip install fabric_hpc-*.whl), "
            "or set [install] python to one that has it (its default: the python running install)")


def _too_old(version: str) -> str | None:
    """Why the interpreter of ``version`` (``3.9.18``) cannot run fabric-hpc, or None."""
    try:
        have = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return None
    if len(have) < 2 or have >= MIN_PYTHON:
        return None
    need = ".".join(map(str, MIN_PYTHON))
    return f"is Python {version}; fabric-hpc needs Python {need} or newer (the wheel does not install there)"


def _old_fix() -> str:
    need = ".".join(map(str, MIN_PYTHON))
    return (f"make a venv from a Python {need}+ (RHEL 8/9: dnf install python{need}; "
            f"python{need} -m venv /opt/fabric-hpc; /opt/fabric-hpc/bin/pip install fabric_hpc-*.whl) "
            "and set [install] python = \"/opt/fabric-hpc/bin/python\"")


def _imports(python: str | os.PathLike[str]) -> tuple[str | None, str]:
    """(why ``python -I -c 'import fabric_hpc'`` fails, or None when it imports; the fabric_hpc version
    it imports, "" when none). Run from /, no shell, no PYTHON* variables: as the unit and slurmd would
    run it. The interpreter's own version is printed first (code old Pythons parse too): one older
    than :data:`MIN_PYTHON` is named as such, not as a missing package (pip there refuses the wheel)."""
    if not os.path.isfile(python):
        return ("does not exist" if not os.path.lexists(python) else "is not a file"), ""
    code = ("import sys; sys.stdout.write('%d.%d.%d\\n' % tuple(sys.version_info[:3])); sys.stdout.flush(); "
            "import fabric_hpc; sys.stdout.write(str(fabric_hpc.__version__))")
    try:
        proc = run_child([python, "-I", "-c", code], IMPORT_TIMEOUT_S, cwd="/")
    except ChildTimeout:
        return f"did not import fabric_hpc within {IMPORT_TIMEOUT_S} s", ""
    except ChildNotStarted as exc:
        return f"cannot run: {exc.reason}", ""
    lines = proc.stdout.strip().splitlines()
    if len(lines) > 1 or proc.returncode != 0:
        if lines and (old := _too_old(lines[0].strip())):
            return old, ""
    if proc.returncode == 0:
        return None, (lines[-1].strip() if lines else "")[:64]
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
                          hint=_old_fix() if problem.startswith("is Python") else _fix(python))
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
    paths = (("install.python", i.python), ("agent.state_dir", a.state_dir),
             ("agent.rest_token_file", a.rest_token_file))
    bad = [(key, value, tmp) for key, value in paths if value and (tmp := _in_private_tmp(value))]
    if bad:  # all of them in one error: the admin fixes every path in one edit
        where = "; ".join(f"{key} {value} is under {tmp}" for key, value, tmp in bad)
        keys = ", ".join(key for key, _, _ in bad)
        these = "these paths" if len(bad) > 1 else "this path"
        raise ConfigError(f"{where}: the agent's unit has PrivateTmp=yes, so the agent would see its own "
                          f"empty /tmp and /var/tmp, not {these}",
                          hint=f"give {keys} a path outside /tmp and /var/tmp (docs/deploy.md)")


def _same_dir(a: str, b: str) -> bool:
    """One directory: the same path, or two paths of one directory here (an NFS-shared /etc/slurm is often
    a symlink)."""
    if posixpath.normpath(a) == posixpath.normpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing here: only the paths can be compared
        return False


def check_slurm_conf_dir(cfg: DeployConfig, running: Mapping[str, str] | None,
                         env: Mapping[str, str]) -> list[str]:
    """Warnings (and a ConfigError) about where slurmctld reads its files: it loads job_submit.lua,
    gres.conf and topology.conf from the directory of its slurm.conf (``running``'s ``SLURM_CONF``,
    from ``scontrol show config``: slurmctld's own path), and the agent's unit has only
    ``agent.slurm_conf`` (not the ``SLURM_CONF`` of this shell or of /etc/sysconfig/slurmctld).
    Refused when install.slurm_conf_dir was left at its default and slurmctld reads another
    directory; a warning when the admin set it (a staging layout may differ on purpose)."""
    i, a, out = cfg.install, cfg.agent, []
    conf = (running or {}).get("SLURM_CONF", "")
    where = posixpath.dirname(conf)
    if conf.startswith("/") and not _same_dir(where, i.slurm_conf_dir):
        what = (f"the running slurmctld reads {conf} (scontrol show config): it loads job_submit.lua, "
                f"gres.conf and topology.conf from {where}, not from install.slurm_conf_dir "
                f"{i.slurm_conf_dir}")
        fix = (f"set agent.slurm_conf = \"{conf}\" (install.slurm_conf_dir follows it, and the agent's "
               f"unit gets SLURM_CONF) or install.slurm_conf_dir = \"{where}\"")
        if "slurm_conf_dir" not in i.model_fields_set:
            raise ConfigError(what + " (nothing was written)", hint=fix)
        out.append(f"{what}; {fix}")
    elif a.slurm_conf and not _same_dir(posixpath.dirname(a.slurm_conf), i.slurm_conf_dir):
        out.append(f"install.slurm_conf_dir {i.slurm_conf_dir} is not the directory of agent.slurm_conf "
                   f"{a.slurm_conf}: slurmctld loads job_submit.lua, gres.conf and topology.conf beside its "
                   "slurm.conf (drop install.slurm_conf_dir to follow agent.slurm_conf)")
    shell = env.get("SLURM_CONF")
    if shell and not a.slurm_conf and not _same_dir(posixpath.dirname(shell), i.slurm_conf_dir):
        out.append(f"SLURM_CONF={shell} is set here but agent.slurm_conf is not: the agent's unit does not "
                   "have it (systemd passes no shell variables, nor slurmctld's /etc/sysconfig file), so the "
                   f"agent reads Slurm's built-in default slurm.conf; set agent.slurm_conf = \"{shell}\"")
    return out
