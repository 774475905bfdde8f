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
