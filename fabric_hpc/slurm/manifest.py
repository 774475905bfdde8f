"""What ``fabric slurm install`` may touch, and the record of what it did: ``install-manifest.json``.

The manifest lives in ``<config_dir>`` (root's directory: the agent's service user, which owns the
state directory, cannot rewrite it); a manifest of an older install in ``<state_dir>`` is still read,
and moved on the next install. Either way uninstall trusts nothing in it:

* the file must be a regular file (not a symlink) owned by root or the user running uninstall, not
  writable by group or others, of the strict shape :class:`Manifest` (unknown keys refused);
* every file it lists must be one install writes (:func:`install_paths`: a fixed name in
  slurm_conf_dir, config_dir or unit_dir), every backup the ``<file>.fabric-backup[.N]`` install made
  beside it, every directory the state dir's ``wake`` file or a managed directory (or one above it)
  below ``--root``.

One problem and nothing is removed (ConfigError, exit 3).

The state directory is the agent's: :data:`STATE_FILES` are the names the agent (and install) write
there; install refuses a state dir holding anything else, and ``--purge-state`` removes only those.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import Any

from pydantic import Field

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.audit import AUDIT_LOG, CYCLES_LOG, rotated_names
from fabric_hpc.validation import StrictModel, parse_model

MANIFEST = "install-manifest.json"
UNIT_NAME = "fabric-agent.service"
BACKUP_SUFFIX = ".fabric-backup"
MAX_MANIFEST_BYTES = 1 << 20
#: The files install writes, by the [install] key of their directory.
INSTALLED_NAMES = {
    "slurm_conf_dir": ("job_submit.lua", "topology.conf", "topology.yaml", "gres.conf"),
    "config_dir": ("task_prolog.py", "prolog.py", "prolog.json", "topology.yaml", "agent.toml"),
    "unit_dir": (UNIT_NAME,),
}
#: What the agent and install write in the state directory (fabric_hpc/slurm/agent.py, usage.py,
#: deferral_store.py, qos_store.py); also a damaged usage.json moved aside (usage.json.damaged-<time>).
STATE_FILES = frozenset({"agent.lock", "heartbeat", "wake", "status.json", AUDIT_LOG, "usage.json",
                         "deferrals.json", "qos.json", CYCLES_LOG, *rotated_names(), MANIFEST})
_DAMAGED = re.compile(r"usage\.json\.damaged-\d{8}T\d{6}Z(\.\d+)?")  # usage.py's AgentUsage.set_aside
_TEMP = re.compile(r"\.(?P<name>[^/]+)\.[^/]*-\d+-[0-9a-f]{8}\.tmp")  # fabric_hpc.atomic.temp_sibling


class FileEntry(StrictModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    backup: str | None = None


class Manifest(StrictModel):
    fabric_hpc: str
    files: dict[str, FileEntry] = Field(default_factory=dict)
    dirs: list[str] = Field(default_factory=list)


def norm(path: str) -> str:
    """An absolute path without ``.``, ``//`` or a trailing ``/`` (``..`` is refused by the config)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def inside(path: str, parent: str) -> bool:
    """``path`` is ``parent`` or below it (both normalised)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def install_paths(install: Any) -> set[str]:
    """Every file path (on the cluster, without --root) install may write for this [install] section."""
    return {norm(f"{getattr(install, key)}/{name}")
            for key, names in INSTALLED_NAMES.items() for name in names}


def managed_dirs(cfg: Any) -> list[str]:
    """The directories install writes into (and creates): slurm_conf_dir, config_dir, unit_dir, state_dir."""
    i = cfg.install
    return [norm(d) for d in (i.slurm_conf_dir, i.config_dir, i.unit_dir, cfg.agent.state_dir)]


def free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``, ...: the first that does not exist (no backup replaces one)."""
    n, candidate = 1, path
    while os.path.lexists(candidate):
        candidate, n = path.with_name(f"{path.name}.{n}"), n + 1
    return candidate


def is_state_entry(name: str) -> bool:
    """A name the agent or install writes in the state dir (or a temporary file of one of those)."""
    temp = _TEMP.fullmatch(name)
    return name in STATE_FILES or (temp is not None and temp["name"] in STATE_FILES) \
        or _DAMAGED.fullmatch(name) is not None


def running_agent(state_dir: Path) -> int | None:
    """The pid of the agent holding ``<state_dir>/agent.lock`` (-1: unreadable), None when none runs."""
    from fabric_hpc.pidlock import PidLock

    return PidLock(state_dir / "agent.lock", busy=str, hint="").holder()


def unknown_state_entries(state_dir: Path) -> list[str]:
    """The entries of an existing state dir that fabric did not create (sorted names)."""
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if not (is_state_entry(n) and stat.S_ISREG(os.lstat(state_dir / n).st_mode)))


def purge_state(state_dir: Path, shown: str) -> list[str]:
    """Remove fabric's own files from the state dir, then the dir when it is empty; unknown entries
    are kept and reported. Returns one line per action."""
    actions, kept = [], unknown_state_entries(state_dir)
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return actions
    for name in names:
        if name not in kept:
            (state_dir / name).unlink(missing_ok=True)
    if kept:
        actions.append(f"kept    {shown} (not fabric's, not removed: {', '.join(kept[:20])}"
                       f"{' …' if len(kept) > 20 else ''})")
    else:
        state_dir.rmdir()
        actions.append(f"purged  {shown}")
    return actions


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``, checked: a regular file of root or this user, not group/other-writable,
    JSON of the strict :class:`Manifest` shape."""
    from fabric_hpc.inputs import load_json, read_bytes

    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise ConfigError(f"{path}: not trusted (a symlink, another user's file, or writable by group or "
                          "others)", hint="restore the manifest install wrote (root-owned, mode 0640), or "
                                          "remove fabric's files by hand (docs/deploy.md lists them)")
    raw = read_bytes(path, what="install manifest", limit=MAX_MANIFEST_BYTES, follow=False)
    return parse_model(Manifest, load_json(raw, str(path)), source=str(path),
                       hint="the manifest was edited: restore the one install wrote")


def manifest_problems(man: Manifest, cfg: Any, root: Path) -> list[str]:
    """Why uninstall must not trust ``man`` for this config and ``--root`` (empty: it may)."""
    problems: list[str] = []
    allowed, dirs = install_paths(cfg.install), managed_dirs(cfg)
    top = norm(str(root))
    for path, entry in man.files.items():
        if path != norm(path) or path not in allowed:
            problems.append(f"file {path!r} is not one install writes for this config")
            continue
        target = str(root / path.lstrip("/"))
        if entry.backup is not None and not re.fullmatch(re.escape(target + BACKUP_SUFFIX) + r"(\.\d{1,6})?",
                                                         entry.backup):
            problems.append(f"backup {entry.backup!r} of {path} is not the {BACKUP_SUFFIX} file of install")
    pd = norm(cfg.agent.state_dir) + ".plugin"  # fabric_hpc.slurm.plugins.plugin_dir
    created = {norm(f"{cfg.agent.state_dir}/wake"), pd, f"{pd}/heartbeat", f"{pd}/wake"}
    for entry in man.dirs:
        if entry != norm(entry) or not inside(entry, top) or entry == top:
            problems.append(f"directory {entry!r} is not below --root {str(root)!r}")
            continue
        path = norm(entry[len(top):]) if top != "/" else entry
        if path not in created and not any(inside(d, path) for d in dirs):
            problems.append(f"{entry!r} is neither a directory install creates nor the plugin's "
                            "heartbeat or wake file")
    return problems


def check_manifest(man: Manifest, cfg: Any, root: Path, source: Path) -> Manifest:
    """``man`` when :func:`manifest_problems` finds nothing; ConfigError listing them otherwise. A
    relative directory entry (``staging/etc``: a release before 2026-12-07 kept a relative --root so) is
    read from the current directory, as that --root was."""
    if any(not d.startswith("/") for d in man.dirs):
        dirs = [d if d.startswith("/") else os.path.abspath(d) for d in man.dirs]
        man = man.model_copy(update={"dirs": dirs})
    problems = manifest_problems(man, cfg, root)
    if problems:
        raise ConfigError(f"{source}: refusing to trust this install manifest (nothing was removed):\n  "
                          + "\n  ".join(problems[:20]),
                          hint="give the same config and --root as at install; a manifest listing other "
                               "paths was edited: restore it, or remove fabric's files by hand "
                               "(docs/deploy.md)")
    return man


def fabric_copy(path: Path | str) -> bool:
    """The file is one of fabric's own (not a site's): install's header comment, or a job_submit.lua
    with fabric's ``-- fabric: protocol`` setting line (``fabric slurm plugin-config -o``), or a script
    with its ``# fabric: config`` line."""
    from fabric_hpc.slurm.plugins import lua_settings

    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20).decode(errors="replace")
    except OSError:
        return False
    head = "\n".join(text.splitlines()[:3])
    return ("Written by `fabric slurm install`" in head or "protocol" in lua_settings(text)
            or re.search(r"^CONFIG = .*# fabric: config$", text, flags=re.M) is not None)


def older_backups(target: Path, recorded: str | None) -> list[str]:
    """Copies later ``install --force`` runs kept beside ``target`` (``.fabric-backup.N``), other than
    the one restored: fabric's own are removed, any other is kept; each is named."""
    out = []
    for p in sorted(target.parent.glob(glob.escape(target.name + BACKUP_SUFFIX) + "*")):
        suffix = p.name[len(target.name + BACKUP_SUFFIX):]
        if str(p) == recorded or not (suffix == "" or re.fullmatch(r"\.\d+", suffix)):
            continue
        if p.is_file() and not p.is_symlink() and fabric_copy(p):
            p.unlink()
            out.append(f"removed {p} (an older copy of fabric's own {target.name})")
        else:
            out.append(f"kept    {p} (an earlier copy install --force kept; not restored: compare it with "
                       f"{target.name} and remove it when not needed)")
    return out
