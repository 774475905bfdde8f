"""The files Slurm loads (``plugins/`` in the repository), rendered with a site's settings.

They ship as package data of ``fabric_hpc.slurm_plugins`` (in a checkout a link to ``plugins/``) and
are read with :mod:`importlib.resources`, so an installed wheel has them too.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from fabric_hpc.errors import ConfigError, NotFoundError

PLUGIN_PACKAGE = "fabric_hpc.slurm_plugins"
#: Version of the contract between job_submit.lua and the agent (comment marking, deferral, the
#: heartbeat and wake files). job_submit.lua carries the same number (``-- fabric: protocol``).
PROTOCOL_VERSION = 1


def plugin_path(name: str) -> Traversable:
    path = resources.files(PLUGIN_PACKAGE).joinpath(name)
    if not path.is_file():
        raise NotFoundError(f"no plugin file {name} in {PLUGIN_PACKAGE}",
                            hint="reinstall fabric-hpc (the wheel ships the Slurm plugin files)")
    return path


def render_job_submit(*, state_dir: str, fallback_s: int = 60, max_gpus_per_node: int = 8) -> str:
    """``plugins/job_submit.lua`` with its three settings replaced."""
    if '"' in state_dir or "\\" in state_dir:
        raise ConfigError(f"state dir {state_dir!r} must not contain quotes or backslashes")
    if fallback_s < 5 or max_gpus_per_node < 1:
        raise ConfigError("fallback_s must be >= 5 and max_gpus_per_node >= 1")
    text = plugin_path("job_submit.lua").read_text()
    subs = {"state_dir": f'local STATE_DIR = "{state_dir}"', "fallback_s": f"local FALLBACK_S = {int(fallback_s)}",
            "max_gpus_per_node": f"local MAX_GPUS_PER_NODE = {int(max_gpus_per_node)}"}
    for key, line in subs.items():
        text, n = re.subn(rf"^local \w+ = .*-- fabric: {key}$", f"{line}   -- fabric: {key}", text, flags=re.M)
        if n != 1:
            raise ConfigError(f"job_submit.lua has no '-- fabric: {key}' setting line")
    return text


#: the Python scripts of plugins/ that Slurm runs, by the slurm.conf key that names them
SCRIPTS = {"task_prolog.py": "TaskProlog", "prolog.py": "Prolog"}


def render_script(name: str, *, config: str, python: str) -> str:
    """A Python script of plugins/ (``task_prolog.py``, ``prolog.py``) with its interpreter line and its
    settings file (prolog.json) set."""
    if '"' in config or "\\" in config or not python.startswith("/") or any(c.isspace() for c in python):
        raise ConfigError(f"{name}: config {config!r} / python {python!r} must be plain absolute paths")
    text = plugin_path(name).read_text()
    first, _, rest = text.partition("\n")
    if not first.startswith("#!"):
        raise ConfigError(f"{name} does not start with an interpreter line")
    rest, n = re.subn(r'^CONFIG = .*# fabric: config$', f'CONFIG = "{config}"  # fabric: config', rest, flags=re.M)
    if n != 1:
        raise ConfigError(f"{name} has no '# fabric: config' setting line")
    return f"#!{python}\n{rest}"


def lua_settings(text: str) -> dict[str, str]:
    """The ``-- fabric: KEY`` settings of a job_submit.lua (protocol absent: a plugin older than protocol 1)."""
    found = re.findall(r'^local \w+ = "?([^"\n]*?)"?\s+-- fabric: (\w+)', text, flags=re.M)
    return {key: value for value, key in found}


def check_plugin(text: str, *, state_dir: str, fallback_s: int, source: str) -> None:
    """ConfigError when job_submit.lua and the agent disagree (protocol version, state dir, fallback)."""
    found = lua_settings(text)
    proto = found.get("protocol", "0")
    fix = "reinstall the plugin with this fabric-hpc: fabric slurm install --config FILE"
    if proto != str(PROTOCOL_VERSION):
        raise ConfigError(f"{source} speaks fabric protocol {proto}, this agent speaks {PROTOCOL_VERSION}", hint=fix)
    if found.get("state_dir") != state_dir:
        raise ConfigError(f"{source} reads the heartbeat in {found.get('state_dir')!r}, the agent writes it in "
                          f"{state_dir!r}", hint=fix)
    if found.get("fallback_s") != str(fallback_s):
        raise ConfigError(f"{source} defers jobs for {found.get('fallback_s')} s, the agent for {fallback_s} s",
                          hint=fix)
