"""The files Slurm loads (``plugins/`` in the repository), rendered with a site's settings.

They ship as package data of ``fabric_hpc.slurm_plugins`` (in a checkout a link to ``plugins/``) and
are read with :mod:`importlib.resources`, so an installed wheel has them too.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm.limits import FALLBACK_S, MAX_GPUS_PER_NODE, check_int

PLUGIN_PACKAGE = "fabric_hpc.slurm_plugins"
#: Version of the contract between job_submit.lua and the agent (comment marking, deferral, the
#: heartbeat and wake files). job_submit.lua carries the same number (``-- fabric: protocol``).
PROTOCOL_VERSION = 1


def plugin_dir(state_dir: str | os.PathLike[str]) -> Path:
    """``<state_dir>.plugin``: the only directory job_submit.lua (SlurmUser, inside slurmctld) opens
    files in: ``heartbeat`` (the service user's file, rewritten in place) and ``wake`` (root's, group
    slurm_group, rewritten by the plugin). Install creates it root-owned, so the service user, who owns
    the state dir, cannot swap either name for a FIFO or a symlink (Lua has no O_NOFOLLOW). The
    plugin derives it the same way: the state dir's text without trailing slashes, plus ``.plugin``."""
    return Path(os.fspath(state_dir).rstrip("/") + ".plugin")


def plugin_path(name: str) -> Traversable:
    path = resources.files(PLUGIN_PACKAGE).joinpath(name)
    if not path.is_file():
        raise NotFoundError(f"no plugin file {name} in {PLUGIN_PACKAGE}",
                            hint="reinstall fabric-hpc (the wheel ships the Slurm plugin files)")
    return path


def control_chars(value: str) -> list[str]:
    """The control characters (C0 and DEL) in ``value``, each once, as ``repr``s."""
    return sorted({repr(ch) for ch in value if ord(ch) < 32 or ord(ch) == 127})


def cluster_path(value: str, *, what: str = "path", example: str = "/var/lib/fabric-agent") -> str:
    """A file or directory on the cluster's nodes: absolute, no ``..`` component (``fabric slurm
    install --root R`` writes under R), no control character (it goes into Lua, systemd units and
    tables). ConfigError (a ValueError, so also a pydantic field error) otherwise."""
    if not isinstance(value, str) or not value.startswith("/") or ".." in PurePosixPath(value).parts:
        raise ConfigError(f"{what} {value!r} must be an absolute path without '..' components",
                          hint=f"e.g. {example}")
    if control_chars(value):
        raise ConfigError(f"{what} {value!r} holds control characters", hint="use a plain path")
    return value


def plain_text(value: str, *, what: str = "value") -> str:
    """``value`` when it holds no control character (a newline would start a new line in the unit,
    Lua or TOML it is written into); ConfigError (a ValueError) otherwise."""
    if control_chars(value):
        raise ConfigError(f"{what} {value!r} holds control characters {', '.join(control_chars(value))}",
                          hint="write it on one line, without tabs or other control characters")
    return value


#: A user or group name the unit's User=/Group= lines (and chown) take: POSIX-like, plus '@' (sssd).
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,255}")


def account_name(value: str, *, what: str = "name") -> str:
    """A user or group name (``slurm``, ``fabric-agent``, ``ann@example.org``); ConfigError otherwise."""
    if not ACCOUNT_NAME.fullmatch(value):
        raise ConfigError(f"{what} {value!r} is not a user or group name",
                          hint="letters, digits and _ . @ - only, not starting with . @ or -")
    return value


def lua_string(value: str, *, what: str = "value") -> str:
    """``value`` as a double-quoted Lua string literal that reads back as exactly ``value``.

    Quotes and backslashes are escaped (``\\"``, ``\\\\``); other non-ASCII bytes are written as
    decimal escapes. A control character (newline, NUL, ...) is refused with a ConfigError: no
    setting of the plugin is meant to hold one, and a path holding one is almost surely a mistake.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string")
    bad = control_chars(value)
    if bad:
        raise ConfigError(f"{what} {value!r} holds control characters {', '.join(bad)}",
                          hint="use a plain path without newlines, tabs or NUL")
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def render_job_submit(*, state_dir: str, fallback_s: int = 60, max_gpus_per_node: int = 8) -> str:
    """``plugins/job_submit.lua`` with its three settings replaced (each written as a Lua literal)."""
    literal = lua_string(state_dir, what="state dir")
    for name, value, bounds in (("fallback_s", fallback_s, FALLBACK_S),
                                ("max_gpus_per_node", max_gpus_per_node, MAX_GPUS_PER_NODE)):
        try:
            check_int(name, value, bounds)
        except ValueError as exc:
            raise ConfigError(f"job_submit.lua: {exc} (got {value})",
                              hint=f"give {name} a value in {bounds[0]}..{bounds[1]}") from None
    text = plugin_path("job_submit.lua").read_text()
    subs = {"state_dir": f"local STATE_DIR = {literal}",
            "fallback_s": f"local FALLBACK_S = {int(fallback_s)}",
            "max_gpus_per_node": f"local MAX_GPUS_PER_NODE = {int(max_gpus_per_node)}"}
    for key, line in subs.items():
        new = f"{line}   -- fabric: {key}"  # by a function: a literal's backslashes stay as they are
        text, n = re.subn(rf"^local \w+ = .*-- fabric: {key}$", lambda _m, new=new: new, text, flags=re.M)
        if n != 1:
            raise ConfigError(f"job_submit.lua has no '-- fabric: {key}' setting line")
    return text


#: the Python scripts of plugins/ that Slurm runs, by the slurm.conf key that names them
SCRIPTS = {"task_prolog.py": "TaskProlog", "prolog.py": "Prolog"}


def render_script(name: str, *, config: str, python: str) -> str:
    """A Python script of plugins/ (``task_prolog.py``, ``prolog.py``) with its interpreter line and its
    settings file (prolog.json) set. The interpreter runs isolated (``-I``): the TaskProlog runs in the
    job's environment, whose ``PYTHONHOME``/``PYTHONPATH``/``PYTHONINSPECT`` (a user's own Python) made it
    fail, and Slurm then ends every task of the job."""
    if '"' in config or "\\" in config or not python.startswith("/") or any(c.isspace() for c in python):
        raise ConfigError(f"{name}: config {config!r} / python {python!r} must be plain absolute paths")
    text = plugin_path(name).read_text()
    first, _, rest = text.partition("\n")
    if not first.startswith("#!"):
        raise ConfigError(f"{name} does not start with an interpreter line")
    rest, n = re.subn(r'^CONFIG = .*# fabric: config$', f'CONFIG = "{config}"  # fabric: config', rest, flags=re.M)
    if n != 1:
        raise ConfigError(f"{name} has no '# fabric: config' setting line")
    return f"#!{python} -I\n{rest}"


def lua_settings(text: str) -> dict[str, str]:
    """The ``-- fabric: KEY`` settings of a job_submit.lua, string literals decoded as Lua reads them
    (protocol absent: a plugin older than protocol 1)."""
    found = re.findall(r'^local \w+ = ("(?:[^"\\\n]|\\.)*"|[^\s"]+)\s+-- fabric: (\w+)', text, flags=re.M)
    return {key: _lua_literal(value) if value.startswith('"') else value for value, key in found}


_LUA_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
                "\\": b"\\", '"': b'"', "'": b"'"}


def _lua_literal(quoted: str) -> str:
    """The string a double-quoted Lua literal stands for (the escapes :func:`lua_string` writes:
    ``\\"``, ``\\\\``, ``\\ddd``; and Lua's single-letter ones)."""
    out, body, i = bytearray(), quoted[1:-1], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        digits = re.match(r"\d{1,3}", body[i + 1:])
        if digits:
            out.append(min(int(digits.group()), 255))
            i += 1 + len(digits.group())
        else:
            out += _LUA_ESCAPES.get(body[i + 1:i + 2], body[i + 1:i + 2].encode())
            i += 2
    return out.decode("utf-8", "surrogateescape")


def same_dir(a: str | None, b: str) -> bool:
    """Whether two state dir paths name one directory: the same file where both exist (a symbolic link
    to it, ``..``), else the same normalised path (a trailing or doubled slash, ``.``)."""
    if a is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet), or may not be looked at
        return os.path.normpath(a) == os.path.normpath(b)


def check_plugin(text: str, *, state_dir: str, fallback_s: int, source: str) -> None:
    """ConfigError when job_submit.lua and the agent disagree (protocol version, state dir, fallback)."""
    found = lua_settings(text)
    fix = "reinstall the plugin with this fabric-hpc: fabric slurm install --config FILE"
    if not found:  # not even a plugin older than protocol 1 (those have the state_dir and fallback_s lines)
        raise ConfigError(f"{source} is not a fabric job_submit plugin (no '-- fabric: KEY' setting lines)",
                          hint=f"point agent.job_submit (--job-submit) at fabric's job_submit.lua, or {fix}")
    proto = found.get("protocol", "0")
    if proto != str(PROTOCOL_VERSION):
        raise ConfigError(f"{source} speaks fabric protocol {proto}, this agent speaks {PROTOCOL_VERSION}", hint=fix)
    if not same_dir(found.get("state_dir"), state_dir):
        raise ConfigError(f"{source} reads the heartbeat in {found.get('state_dir')!r}, the agent writes it in "
                          f"{state_dir!r}", hint=fix)
    if found.get("fallback_s") != str(fallback_s):
        raise ConfigError(f"{source} defers jobs for {found.get('fallback_s')} s, the agent for {fallback_s} s",
                          hint=fix)
