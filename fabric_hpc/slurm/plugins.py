"""The files Slurm loads from ``plugins/``, rendered with a site's settings."""

from __future__ import annotations

import re
from pathlib import Path

from fabric_hpc.errors import ConfigError, NotFoundError

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins"


def plugin_path(name: str) -> Path:
    path = PLUGIN_DIR / name
    if not path.is_file():
        raise NotFoundError(f"no plugin file {path}",
                            hint="run from a fabric-hpc checkout (plugins/ sits beside fabric_hpc/)")
    return path


def lua_string(value: str, *, what: str = "value") -> str:
    """``value`` as a double-quoted Lua string literal that reads back as exactly ``value``.

    Quotes and backslashes are escaped (``\\"``, ``\\\\``); other non-ASCII bytes are written as
    decimal escapes. A control character (newline, NUL, ...) is refused with a ConfigError: no
    setting of the plugin is meant to hold one, and a path holding one is almost surely a mistake.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string")
    bad = sorted({repr(ch) for ch in value if ord(ch) < 32 or ord(ch) == 127})
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
    if not 5 <= fallback_s <= 86400 or not 1 <= max_gpus_per_node <= 1024:
        raise ConfigError("fallback_s must be in 5..86400 and max_gpus_per_node in 1..1024")
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
