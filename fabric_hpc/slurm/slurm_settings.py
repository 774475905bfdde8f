"""The slurm.conf settings fabric's pieces hang on (``JobSubmitPlugins``, ``Prolog``, ``TaskProlog``), as
the running slurmctld has them (``scontrol show config``) or, when it does not answer, as the conf files
say (slurm.conf and the files it Includes).

``install`` prints the ``JobSubmitPlugins`` line with the site's plugins kept (``require_timelimit,lua``);
``uninstall`` refuses while slurmctld still names a file it would remove (the next job's Prolog fails and
the node drains; a missing job_submit.lua fails every submission at the next reconfigure); ``fabric agent
check`` fails while slurmctld does not run them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child
from fabric_hpc.slurm.manifest import norm

if TYPE_CHECKING:
    from fabric_hpc.slurm.deploy_config import DeployConfig

#: The settings read, as Slurm spells them (slurm.conf keys are case-insensitive).
KEYS = ("JobSubmitPlugins", "Prolog", "TaskProlog", "GresTypes")
#: Seconds ``scontrol show config`` has to answer before :func:`running_settings` takes slurmctld for not
#: running (install and uninstall then read the conf files instead); the value it always had.
SHOW_CONFIG_TIMEOUT_S = 15
MAX_INCLUDE_DEPTH = 8


def parse_show_config(text: str) -> dict[str, str]:
    """``Key = value`` lines of ``scontrol show config`` -> {key: value} for :data:`KEYS`, ``SLURM_CONF``
    and ``SLURM_VERSION``; ``(null)`` is the empty string. Slurm 23.11+ lists each of several prologs as
    ``Prolog[N] = path``: they are joined with commas, as slurm.conf writes them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key, value = re.sub(r"\[\d+\]$", "", key.strip()), value.strip()
        if sep and key in (*KEYS, "SLURM_CONF", "SLURM_VERSION") and value != "(null)":
            out[key] = f"{out[key]},{value}" if out.get(key) else value
    return out


def running_settings(env: dict[str, str] | None = None,
                     run: Callable[[Sequence[str]], str] | None = None,
                     timeout_s: float = SHOW_CONFIG_TIMEOUT_S) -> dict[str, str] | None:
    """The running slurmctld's settings (:func:`parse_show_config`); None when it does not answer within
    ``timeout_s`` (``run``: the caller's way to run the command, with its own timeout)."""
    if run is not None:
        return parse_show_config(run(["scontrol", "show", "config"]))
    try:
        out = run_child(["scontrol", "show", "config"], timeout_s, env=env)
    except (ChildNotStarted, ChildTimeout):
        return None
    return parse_show_config(out.stdout) if out.returncode == 0 and "SLURM_CONF" in out.stdout else None


def conf_file_settings(conf: Path, root: Path = Path("/")) -> dict[str, str]:
    """:data:`KEYS` as slurm.conf ``conf`` (under ``root``) and its ``Include`` files set them (the last
    one wins, keys in any case); {} when the file cannot be read."""
    out: dict[str, str] = {}
    _read_conf(root / str(conf).lstrip("/"), root, out)
    return out


def conf_node_gres(conf: Path, root: Path = Path("/")) -> dict[str, str]:
    """{node: its GRES other than GPUs (``nvme:1``)} as the ``NodeName`` lines of slurm.conf ``conf``
    (under ``root``) and its ``Include`` files declare them; nodes with GPUs only are left out."""
    from fabric_hpc.hostlist import expand

    out: dict[str, str] = {}
    default = ""
    for line in _conf_lines(root / str(conf).lstrip("/"), root):
        if not line.lower().startswith("nodename="):
            continue
        fields = {k.lower(): v for k, _, v in (f.partition("=") for f in line.split())}  # keys in any case
        names = fields.get("nodename", "")
        gres = other_gres(fields["gres"]) if "gres" in fields else None
        if names.upper() == "DEFAULT":
            default = gres if gres is not None else default
            continue
        gres = default if gres is None else gres
        if gres and names:
            out.update(dict.fromkeys(expand(names), gres))
    return out


def other_gres(gres: str | None) -> str:
    """The items of a node's ``Gres`` that are not GPUs, details dropped: ``gpu:h100:8(S:0-1),nvme:1``
    -> ``nvme:1``."""
    items = [re.sub(r"\(.*\)$", "", i.strip()) for i in re.split(r",(?![^(]*\))", gres or "")]
    return ",".join(i for i in items if i and i != "(null)" and i.split(":")[0] not in ("gpu", "gres/gpu"))


def show_nodes_gres(text: str) -> dict[str, str]:
    """{node: :func:`other_gres`} of ``scontrol -o show nodes``; nodes with GPUs only are left out."""
    out = {}
    for line in text.splitlines():
        name = re.search(r"(?:^|\s)NodeName=(\S+)", line)
        gres = re.search(r"(?:^|\s)Gres=(\S+)", line)
        if name and gres and (other := other_gres(gres[1])):
            out[name[1]] = other
    return out


def site_node_gres(cfg: DeployConfig, root: Path) -> dict[str, str]:
    """The nodes' GRES other than GPUs (:func:`show_nodes_gres`) as the running slurmctld has them (only
    for ``--root /``), else as the slurm.conf install sits next to declares them (:func:`conf_node_gres`)."""
    conf = cfg.agent.slurm_conf or str(Path(cfg.install.slurm_conf_dir) / "slurm.conf")
    if root.resolve() == Path("/"):
        from fabric_hpc.errors import FabricError
        from fabric_hpc.slurm.cli_backend import CliClient

        env = {**os.environ, "SLURM_CONF": conf} if cfg.agent.slurm_conf else None
        try:  # through the cli backend: its SLURM_CONF check, timeout and failures (then the conf file)
            out = CliClient(env, timeout=15).run(["scontrol", "-o", "show", "nodes"])
        except FabricError:
            out = ""
        if "NodeName=" in out:
            return show_nodes_gres(out)
    return conf_node_gres(Path(conf), root)


def gres_types_line(current: str | None) -> str:
    """The ``GresTypes`` line to put in slurm.conf: the site's GRES types, and ``gpu``."""
    names = [n.strip() for n in (current or "").split(",") if n.strip() and n.strip() != "(null)"]
    return "GresTypes=" + ",".join(names if "gpu" in names else [*names, "gpu"])


#: A ``key=value`` pair as parse_config.c's ``keyvalue_pattern`` reads it: the value quoted or up to a space.
_PAIR = re.compile(r'([A-Za-z0-9_.]+)\s*[-*+/]?=\s*(?:"([^"]*)"|(\S+))(?=\s|$)')
#: Lines whose later pairs are the entry's own (``NodeName=n1 Gres=...``), not slurm.conf keys.
_ENTRY_KEYS = frozenset({"nodename", "partitionname", "nodeset", "downnodes", "frontendname"})


def conf_pairs(line: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a slurm.conf line, in order (several may share a line; quotes
    removed); none at all for an entry line (``NodeName=``, ``PartitionName=``...) but its first."""
    pairs = [(m.group(1), m.group(2) if m.group(2) is not None else m.group(3)) for m in _PAIR.finditer(line)]
    return pairs[:1] if pairs and pairs[0][0].lower() in _ENTRY_KEYS else pairs


def _conf_lines(path: Path, root: Path, depth: int = 0, conf_dir: Path | None = None,
                seen: dict[str, str] | None = None) -> Iterator[str]:
    """The lines of a conf file and of its ``Include`` files in place (comments dropped, stripped);
    nothing from a file that cannot be read. A relative Include is slurm.conf's directory's
    (``conf_dir``), in an Included file too, as Slurm's ``get_extra_conf_path`` reads it; a name with a
    ``*`` is not read (parse_config.c: "Slurm does not support glob parsing"); ``%c`` in a name is the
    ClusterName read so far, in lower case (parse_config.c ``_parse_for_format``), and without one the
    Include is not read, as Slurm fails to open it."""
    conf_dir = path.parent if conf_dir is None else conf_dir
    seen = {} if seen is None else seen
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        words = line.split(None, 2)  # Slurm: "include", any whitespace (a tab too), the file name
        if len(words) > 1 and words[0].lower() == "include" and depth < MAX_INCLUDE_DEPTH:
            name = _include_name(words[1], seen)
            if name is not None:
                inc = root / name.lstrip("/") if name.startswith("/") else conf_dir / name
                yield from _conf_lines(inc, root, depth + 1, conf_dir, seen)
        elif line:
            seen.update(("cluster", v.lower()) for k, v in conf_pairs(line)
                        if k.lower() == "clustername" and v)
            yield line


def _include_name(name: str, seen: dict[str, str]) -> str | None:
    """An Include's file name as Slurm opens it, or None where Slurm opens nothing."""
    if "*" in name:  # no Slurm expands a glob: 23.11+ skip the line, 22.05 fails to open it
        return None
    if "%c" in name:
        return name.replace("%c", seen["cluster"]) if "cluster" in seen else None
    return name


def _read_conf(path: Path, root: Path, out: dict[str, str]) -> None:
    wanted = {k.lower(): k for k in KEYS}
    for line in _conf_lines(path, root):
        out.update((wanted[k.lower()], v) for k, v in conf_pairs(line) if k.lower() in wanted)


def plugins(value: str | None) -> list[str]:
    """``"require_timelimit, lua"`` -> ``["require_timelimit", "lua"]`` (a ``job_submit/`` prefix dropped)."""
    names = [p.strip() for p in (value or "").split(",")]
    return [n.removeprefix("job_submit/") for n in names if n and n != "(null)"]


def job_submit_line(current: str | None) -> str:
    """The ``JobSubmitPlugins`` line to put in slurm.conf: the site's plugins, and ``lua``."""
    names = plugins(current)
    return "JobSubmitPlugins=" + ",".join(names if "lua" in names else [*names, "lua"])


def site_settings(cfg: DeployConfig, root: Path) -> tuple[dict[str, str], str]:
    """The settings and where they were read: the running slurmctld when it answers (only for
    ``--root /``), else the slurm.conf install sits next to (agent.slurm_conf, else
    ``<slurm_conf_dir>/slurm.conf``) and its Includes."""
    conf = cfg.agent.slurm_conf or str(Path(cfg.install.slurm_conf_dir) / "slurm.conf")
    if root.resolve() == Path("/"):
        env = {**os.environ, "SLURM_CONF": conf} if cfg.agent.slurm_conf else None
        running = running_settings(env)
        if running is not None:
            return running, "scontrol show config"
    return conf_file_settings(Path(conf), root), conf


def still_named(settings: dict[str, str], removed: set[str], lua: str | None) -> list[str]:
    """The settings of a running slurmctld that name a file uninstall removes: ``Prolog``/``TaskProlog``
    paths in ``removed``, and ``lua`` among its JobSubmitPlugins when fabric's ``lua`` (the
    job_submit.lua next to its slurm.conf) goes without a site plugin put back."""
    out = []
    for key in ("Prolog", "TaskProlog"):
        for value in (v.strip() for v in settings.get(key, "").split(",")):
            if value and norm(value) in removed:
                out.append(f"{key}={value}: slurmd runs it for every job; once it is gone every job fails "
                           "and its node drains")
    conf_dir = os.path.dirname(settings.get("SLURM_CONF", "")) or None
    if lua and "lua" in plugins(settings.get("JobSubmitPlugins")) and \
            conf_dir in (None, os.path.dirname(lua)):
        out.append(f"JobSubmitPlugins={settings['JobSubmitPlugins']}: slurmctld runs {lua}; once it is gone "
                   "submissions fail after the next reconfigure")
    return out


def refuse_if_named(settings: dict[str, str] | None, removed: set[str], lua: str | None) -> None:
    """ConfigError (exit 3) naming the slurm.conf lines to remove first (:func:`still_named`)."""
    named = still_named(settings or {}, removed, lua)
    if named:
        raise ConfigError("the running slurmctld (scontrol show config) still uses files uninstall would "
                          "remove (nothing was removed):\n  " + "\n  ".join(named),
                          hint="first remove these from slurm.conf (and the files it Includes; keep the "
                               "site's own JobSubmitPlugins) and run `scontrol reconfigure`, then run "
                               "uninstall again (--force removes the files anyway)")
