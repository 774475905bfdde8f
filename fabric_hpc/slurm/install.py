"""``fabric slurm install`` / ``uninstall``: lay fabric's pieces onto a Slurm cluster, and take them off again.

What is written (paths from the agent config file's ``[install]`` section, docs/deploy.md):

* ``<slurm_conf_dir>/job_submit.lua`` (state dir, fallback and GPU limit filled in),
  ``<slurm_conf_dir>/topology.conf`` (or ``topology.yaml`` on Slurm 25.05+) and ``gres.conf``;
* ``<config_dir>/task_prolog.py`` (its interpreter: ``python``), ``prolog.json``, ``topology.yaml``
  (the fabric model) and ``agent.toml`` (the agent's settings, every one written out);
* ``<unit_dir>/fabric-agent.service`` (hardened systemd unit running the agent as ``service_user``);
* the state directory, owned by ``service_user`` (group ``slurm_group``), and beside it
  ``<state_dir>.plugin/`` (root's) with the ``heartbeat`` and ``wake`` files job_submit.lua opens.

Rules: every file written carries a header comment (JSON cannot: the manifest covers it) and is
listed with its sha256 in ``<config_dir>/install-manifest.json`` (root's directory; uninstall trusts
only what install could have written: :mod:`fabric_hpc.slurm.manifest`). A file that exists and is not
ours (or that was changed since we wrote it) is never overwritten without ``--force``; with it,
the file is first copied to ``<file>.fabric-backup``, which ``uninstall`` puts back. Two files of
the plan on one path (Slurm's topology.yaml and the fabric model when slurm_conf_dir is config_dir)
are refused; a file already as planned is not rewritten. slurm.conf is
never edited: the lines the admin must add are printed. ``root`` prefixes every path (like
DESTDIR) so the same plan can be written into a staging tree or a test directory.
"""

from __future__ import annotations

import contextlib
import difflib
import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import time
from pathlib import Path

from fabric_hpc import __version__
from fabric_hpc.errors import ConfigError
from fabric_hpc.atomic import write_atomic
from fabric_hpc.slurm.deploy_config import DeployConfig
from fabric_hpc.slurm.install_fs import give as _give
from fabric_hpc.slurm.manifest import (BACKUP_SUFFIX, MANIFEST, UNIT_NAME, check_manifest, fabric_copy,
                                      free_name, older_backups, read_manifest, running_agent,
                                      unknown_state_entries)
from fabric_hpc.slurm.manifest import purge_state as purge_state_dir
from fabric_hpc.slurm.plugins import plugin_dir
from fabric_hpc.slurm.install_plan import (  # noqa: F401 (re-exported: callers import them from here)
    BLOCK_SINCE, HEADER, YAML_SINCE, Planned, detect_slurm_version, plan)
from fabric_hpc.slurm.unit import _toml_value, agent_toml, unit_safe, unit_text  # noqa: F401 (re-exported)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Installer:
    """Writes a plan under ``root``, keeps the manifest (:mod:`fabric_hpc.slurm.manifest`), and undoes it."""

    def __init__(self, cfg: DeployConfig, *, root: str | os.PathLike[str] = "/") -> None:
        # absolute: the manifest lists the directories install made under it, which uninstall checks
        # against --root; `--root staging` kept them as `staging/etc` and uninstall refused them all
        self.cfg, self.root = cfg, Path(os.path.abspath(root))
        self.state_dir = self.at(cfg.agent.state_dir)
        self.manifest_path = self.at(cfg.install.config_dir) / MANIFEST  # root's directory, not the agent's
        self.legacy_manifest = self.state_dir / MANIFEST  # where installs before this one kept it

    def at(self, path: str) -> Path:
        if ".." in Path(path).parts:  # the config refuses these; nothing may land outside root
            raise ConfigError(f"{path!r} leaves the install root", hint="give absolute paths without '..'")
        return self.root / path.lstrip("/")

    def _found_manifest(self) -> Path | None:
        for path in (self.manifest_path, self.legacy_manifest):
            if os.path.lexists(path):
                return path
        return None

    def manifest(self) -> dict:
        """The manifest of the last install (checked: :func:`~fabric_hpc.slurm.manifest.check_manifest`),
        or an empty one."""
        path = self._found_manifest()
        if path is None:
            return {"fabric_hpc": __version__, "files": {}, "dirs": []}
        man = check_manifest(read_manifest(path), self.cfg, self.root, path)
        return man.model_dump()

    # -- what would change --------------------------------------------------------------------
    def foreign(self, files: list[Planned]) -> list[str]:
        """Existing files install did not write (or that changed since): never overwritten without --force."""
        known, out = self.manifest()["files"], []
        for f in files:
            target = self.at(f.path)
            if not target.exists():
                continue
            current = sha256(target.read_bytes())
            if current == sha256(f.text.encode()):
                continue
            entry = known.get(f.path)
            if entry is None:
                out.append(f"{f.path}: exists and was not written by fabric slurm install")
            elif entry["sha256"] != current:
                out.append(f"{f.path}: changed since fabric slurm install wrote it")
        planned = {f.path for f in files}
        for path, entry in sorted(known.items()):  # the last install's files this plan drops are removed
            target = self.at(path)
            if path not in planned and _is_file(target) and sha256(target.read_bytes()) != entry["sha256"]:
                out.append(f"{path}: changed since fabric slurm install wrote it (this install removes it: "
                           "the plan no longer has it)")
        return out

    def owner_problems(self) -> list[str]:
        """Why install would refuse before writing (a missing user or group, a state dir holding
        files that are not fabric's): for ``--dry-run``."""
        try:
            self._owner()
            self._check_state_dir()
        except ConfigError as exc:
            return [str(exc)]
        return []

    def diff(self, files: list[Planned]) -> str:
        chunks = []
        for f in files:
            target = self.at(f.path)
            old = target.read_text(errors="replace").splitlines(keepends=True) if target.exists() else []
            chunks += difflib.unified_diff(old, f.text.splitlines(keepends=True),
                                           fromfile=f.path if old else "/dev/null", tofile=f.path)
        return "".join(chunks)

    # -- install ------------------------------------------------------------------------------
    def install(self, files: list[Planned], *, force: bool = False) -> list[str]:
        """Write the plan; returns one line per action. Refuses (ConfigError) before writing anything.
        A file already as planned is left alone (a rerun with nothing changed writes nothing)."""
        refused = self.foreign(files)
        if refused and not force:
            raise ConfigError("will not overwrite:\n  " + "\n  ".join(refused),
                              hint="look at `fabric slurm install --dry-run`; --force keeps a .fabric-backup copy")
        uid, gid = self._owner()
        self._check_state_dir()
        self._check_inside_root([self.at(f.path) for f in files] + [self.manifest_path, self.state_dir])
        man, actions = self.manifest(), []
        stale = {p: e for p, e in man["files"].items() if p not in {f.path for f in files}}
        created = self._state_dir(uid, gid, force=force, actions=actions)
        man["dirs"] = sorted(set(man["dirs"]) | set(created) | set(self._mkdirs(self.manifest_path)))
        for f in files:
            self._write(f, man, actions)
        if stale:  # a file the last install wrote and this plan does not (topology.yaml -> .conf)
            site = {p for p, e in stale.items() if _site_backup(e.get("backup"), p)}
            self._remove_files(stale, site, actions)
            for p in stale:
                del man["files"][p]
        self._save(man)
        if any(a.startswith("wrote") for a in actions) and (pid := running_agent(self.state_dir)) is not None:
            actions.append(f"note    the fabric agent (pid {pid}) runs with the settings it started with: "
                           f"restart it for this install to apply (systemctl restart {UNIT_NAME})")
        return actions

    def _write(self, f: Planned, man: dict, actions: list[str]) -> None:
        """Write one planned file. The manifest is saved (atomically) before the file is replaced and
        after: a failure at any point leaves a manifest that names every file written and every
        backup made (uninstall and a rerun restore the site's file from it)."""
        target, data = self.at(f.path), f.text.encode()
        entry = man["files"].get(f.path, {"backup": None})
        if target.exists() and sha256(target.read_bytes()) == sha256(data):
            _chmod(target, f.mode)
            man["files"][f.path] = {**entry, "sha256": sha256(data)}
            actions.append(f"unchanged {f.path}")
            return
        man["dirs"] = sorted(set(man["dirs"]) | set(self._mkdirs(target)))
        if target.exists() and (f.path not in man["files"] or
                                man["files"][f.path]["sha256"] != sha256(target.read_bytes())):
            backup = free_name(Path(str(target) + BACKUP_SUFFIX))
            if entry["backup"] is None:  # the original (pre-fabric) file is what uninstall restores
                entry["backup"] = str(backup)
            man["files"][f.path] = {**entry, "sha256": sha256(data)}
            self._save(man)  # the backup is on record before the file it keeps is replaced
            shutil.copy2(target, backup, follow_symlinks=False)
            actions.append(f"backup  {f.path} -> {backup.name}")
        write_atomic(target, data, mode=f.mode)
        if target.name == "job_submit.lua":  # 22.05 reloads it only when its mtime is after its last load
            _newer_than(target, time.time_ns())
        man["files"][f.path] = {**entry, "sha256": sha256(data)}
        self._save(man)
        actions.append(f"wrote   {f.path}")

    def _mkdirs(self, path: Path) -> list[str]:
        """Create the missing directories above ``path`` (below root), each 0755 whatever the umask
        (the TaskProlog runs as the job's user and must reach config_dir); existing ones are left as
        they are. Returns those created."""
        made: list[str] = []
        os.makedirs(self.root, 0o755, exist_ok=True)  # a staging tree's own top (not recorded)
        for d in reversed(_missing_parents(path, self.root)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o755)
                os.chmod(d, 0o755)
                made.append(str(d))
        return made

    def _check_state_dir(self) -> None:
        """The state dir is a real directory (not a symlink, which install and uninstall would follow)
        or is missing, and holds only what fabric writes there (install takes it over: owner, mode)."""
        shown = self.cfg.agent.state_dir
        if self.state_dir.is_symlink():
            raise ConfigError(f"state dir {shown} is a symlink (to {os.readlink(self.state_dir)}): install "
                              "would give the directory it points to to the service user",
                              hint="set agent.state_dir to the real directory, or remove the symlink")
        if os.path.lexists(self.state_dir) and not self.state_dir.is_dir():
            raise ConfigError(f"state dir {shown} exists and is not a directory",
                              hint="remove it, or set agent.state_dir to a new or empty directory")
        pd = plugin_dir(self.state_dir)
        try:
            st: os.stat_result | None = os.stat(pd.parent)
        except FileNotFoundError:
            st = None  # install makes it (root's, 0755)
        # sticky or not: a user could make the directory (or its files) first and keep them open
        if st is not None and ((os.geteuid() == 0 and st.st_uid != 0) or st.st_mode & 0o022):
            raise ConfigError(f"{pd.parent} (where install puts {pd.name}, the plugin's directory) may be "
                              "changed by users other than root: they could replace what slurmctld reads",
                              hint="set agent.state_dir inside a directory only root may write (e.g. "
                                   "/var/lib/fabric-agent)")
        unknown = unknown_state_entries(self.state_dir) if self.state_dir.is_dir() else []
        if unknown:
            raise ConfigError(f"state dir {self.cfg.agent.state_dir} holds files fabric did not create: "
                              f"{', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''}",
                              hint="give agent.state_dir a new or empty directory of its own (install "
                                   "gives it to the service user, uninstall --purge-state empties it)")

    def _check_inside_root(self, paths: list[Path]) -> None:
        """Every directory install writes in resolves below --root (a symlinked <root>/etc/systemd/system
        would put the unit elsewhere): ConfigError before anything is written."""
        top = os.path.realpath(self.root)
        for p in paths:
            real = os.path.realpath(p.parent)
            if not (real == top or real.startswith(top.rstrip("/") + "/")):
                raise ConfigError(f"{p.parent} resolves to {real}, outside --root {self.root} (a symlink "
                                  "on the way): install would write there (nothing was written)",
                                  hint=f"replace the symlink by a directory below {self.root}")

    def _owner(self) -> tuple[int, int]:
        i = self.cfg.install
        try:
            uid = pwd.getpwnam(i.service_user).pw_uid
        except KeyError:
            raise ConfigError(f"no user {i.service_user!r} (install.service_user)",
                              hint=f"useradd --system --no-create-home {i.service_user}") from None
        try:
            gid = grp.getgrnam(i.slurm_group).gr_gid
        except KeyError:
            raise ConfigError(f"no group {i.slurm_group!r} (install.slurm_group)",
                              hint="set it to the group of SlurmUser (id -gn slurm)") from None
        return uid, gid

    def _state_dir(self, uid: int, gid: int, *, force: bool, actions: list[str]) -> list[str]:
        """Create (or check) the state dir: owner service_user, group slurm_group, 0750; and the plugin's
        directory beside it (:meth:`_plugin_dir`)."""
        d, created = self.state_dir, self._mkdirs(self.state_dir / "x")
        st = d.stat()
        wrong = []
        if (st.st_uid, st.st_gid) != (uid, gid):
            wrong.append(f"owner {st.st_uid}:{st.st_gid}, expected {uid}:{gid} "
                         f"({self.cfg.install.service_user}:{self.cfg.install.slurm_group})")
        if st.st_mode & 0o002:
            wrong.append(f"mode {st.st_mode & 0o777:o} is world-writable")
        if wrong and not created and not force:
            raise ConfigError(f"state dir {self.cfg.agent.state_dir}: " + "; ".join(wrong),
                              hint="fix it (chown/chmod) or pass --force to have install set it")
        _give(d, uid, gid, 0o750, directory=True)  # by an O_NOFOLLOW fd: the service user owns d
        created += self._plugin_dir(uid, gid)
        actions.append(f"state   {self.cfg.agent.state_dir} ({self.cfg.install.service_user}:"
                       f"{self.cfg.install.slurm_group} 0750); {plugin_dir(self.cfg.agent.state_dir)} "
                       f"(root:{self.cfg.install.slurm_group} 0755: heartbeat "
                       f"{self.cfg.install.service_user} 0644, wake 0660)")
        return created

    def _plugin_dir(self, uid: int, gid: int) -> list[str]:
        """``<state_dir>.plugin`` (:func:`~fabric_hpc.slurm.plugins.plugin_dir`), the only directory
        job_submit.lua opens files in: root's (0755, group slurm_group), so its two names cannot be
        swapped by the service user; ``heartbeat`` is the service user's (0644, rewritten in place by the
        agent), ``wake`` root's (0660: the plugin, group slurm_group, rewrites it). Its parent must be
        a directory only root changes (else the service user could move the whole directory away)."""
        pd, created = plugin_dir(self.state_dir), []
        with contextlib.suppress(FileExistsError):
            os.mkdir(pd, 0o755)
            created.append(str(pd))
        if (who := os.lstat(pd).st_uid) != os.geteuid():
            raise ConfigError(f"{pd} is owned by uid {who}, not by root: another user made it (and may keep "
                              "its files open); install does not adopt it (nothing was changed there)",
                              hint=f"remove {pd} and run install again")
        _give(pd, os.geteuid(), gid, 0o755, directory=True)
        for name, owner, mode in (("heartbeat", uid, 0o644), ("wake", os.geteuid(), 0o660)):
            st = _lstat(pd / name)
            if st is not None and st.st_uid not in (os.geteuid(), uid) and not stat.S_ISDIR(st.st_mode):
                os.unlink(pd / name)  # another user's: made anew (O_EXCL), never adopted
            if _give(pd / name, owner, gid, mode, create=True):
                created.append(str(pd / name))
        return created

    def _save(self, man: dict) -> None:
        """The manifest, in config_dir (root's); rewritten only when it changed; an older install's
        manifest in the state dir is removed once this one is written."""
        man["fabric_hpc"] = __version__
        text = json.dumps(man, indent=2, sort_keys=True) + "\n"
        try:
            same = self.manifest_path.read_text() == text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            write_atomic(self.manifest_path, text, mode=0o640)
        if self.legacy_manifest != self.manifest_path:
            self.legacy_manifest.unlink(missing_ok=True)

    # -- uninstall ----------------------------------------------------------------------------
    def uninstall(self, *, force: bool = False, purge_state: bool = False,
                  running: dict[str, str] | None = None) -> list[str]:
        """Remove exactly what install wrote (restoring backups that are the site's, removing those that
        are fabric's own); refuses files changed since, and files the running slurmctld's settings
        ``running`` (:mod:`fabric_hpc.slurm.slurm_settings`) still name, unless --force, and a manifest
        that lists anything install does not write (nothing is removed then)."""
        found = self._found_manifest()
        if found is None:
            raise ConfigError(f"nothing installed: no {self.manifest_path}",
                              hint="give the same config (config_dir) and --root as at install")
        if purge_state and (pid := running_agent(self.state_dir)) is not None:
            who = "" if pid < 0 else f" (pid {pid})"
            raise ConfigError(f"the fabric agent{who} is running on {self.cfg.agent.state_dir}: "
                              "--purge-state would remove its lock and logs under it (nothing was removed)",
                              hint=f"stop it first (systemctl stop {UNIT_NAME}), then run uninstall again")
        man, actions = self.manifest(), []
        problems = self._removal_problems(man, purge_state=purge_state)
        if problems:
            raise ConfigError("uninstall cannot remove what install wrote (nothing was removed):\n  "
                              + "\n  ".join(problems[:20]),
                              hint="fix these paths (or remove fabric's files by hand: docs/deploy.md lists "
                                   "them), then run uninstall again")
        changed = [p for p, e in man["files"].items()
                   if self.at(p).exists() and sha256(self.at(p).read_bytes()) != e["sha256"]]
        if changed and not force:
            raise ConfigError("changed since install (not removed):\n  " + "\n  ".join(changed),
                              hint="--force removes them anyway")
        site = {p for p, e in man["files"].items() if _site_backup(e.get("backup"), p)}
        lua = str(Path(self.cfg.install.slurm_conf_dir) / "job_submit.lua")
        if not force:
            from fabric_hpc.slurm.slurm_settings import refuse_if_named

            refuse_if_named(running, {p for p in man["files"] if self.at(p).exists()},
                            lua if lua in man["files"] and lua not in site else None)
        restored = self._remove_files(man["files"], site, actions)
        actions += self._reload_notes(man["files"], restored)
        for path in {found, self.manifest_path, self.legacy_manifest}:
            path.unlink(missing_ok=True)
        if purge_state and self.state_dir.is_dir():
            actions += purge_state_dir(self.state_dir, self.cfg.agent.state_dir)
        linked = self.state_dir.is_symlink()  # an install before this check followed it: never again
        for d in sorted(set(man["dirs"]), key=len, reverse=True):  # deepest first; only empty ones go
            p = Path(d)
            ours = p.parent == plugin_dir(self.state_dir) and p.name in ("heartbeat", "wake")
            if (ours or p.name == "wake" and p.parent == self.state_dir and not linked) and _is_file(p):
                p.unlink()
            elif p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
        if self.state_dir.exists():
            actions.append(f"kept    {self.cfg.agent.state_dir} (the agent's logs; --purge-state removes it)")
        return actions


    def _remove_files(self, files: dict, site: set[str], actions: list[str]) -> set[str]:
        """Remove every file of the manifest; put back the backups in ``site`` (the site's own files),
        remove the others (fabric's own); returns the paths restored."""
        restored = set()
        for path, entry in sorted(files.items()):
            target = self.at(path)
            ours = _mtime_ns(target)
            target.unlink(missing_ok=True)
            actions.append(f"removed {path}")
            backup = entry.get("backup")
            if backup and os.path.lexists(backup):
                if not stat.S_ISREG(os.lstat(backup).st_mode):
                    actions.append(f"kept    {backup} (not a regular file: not restored)")
                elif path not in site:
                    os.unlink(backup)
                    actions.append(f"removed {backup} (a copy of fabric's own {Path(path).name}, not the "
                                   "site's: not restored)")
                else:
                    os.replace(backup, target)
                    _newer_than(target, ours)
                    restored.add(path)
                    actions.append(f"restored {path} from {Path(backup).name}")
            actions += older_backups(target, backup)
        return restored

    def _removal_problems(self, man: dict, *, purge_state: bool) -> list[str]:
        """What would stop uninstall halfway (a listed file that is a directory now, a path through a
        file, a symlinked state dir to purge): all checked before anything is removed."""
        out = []
        for path in sorted(man["files"]):
            try:
                st = os.lstat(self.at(path))
            except FileNotFoundError:
                continue
            except OSError as exc:  # ENOTDIR: a part of the path is a file now
                out.append(f"{path}: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                out.append(f"{path}: a directory now, not the file install wrote")
        if purge_state and self.state_dir.is_symlink():
            out.append(f"state dir {self.cfg.agent.state_dir} is a symlink (to {os.readlink(self.state_dir)})"
                       ": --purge-state removes nothing through it (uninstall without --purge-state, then "
                       "remove the agent's files by hand)")
        elif purge_state and os.path.lexists(self.state_dir) and not self.state_dir.is_dir():
            out.append(f"state dir {self.cfg.agent.state_dir} is not a directory")
        return out

    def _reload_notes(self, files: dict, restored: set[str]) -> list[str]:
        """What slurmctld does next: it reloads job_submit.lua only when the file's mtime is newer than
        the one it loaded, and keeps the loaded script while the file is missing."""
        lua = str(Path(self.cfg.install.slurm_conf_dir) / "job_submit.lua")
        if lua not in files:
            return []
        if lua in restored:
            return [f"note    slurmctld loads the restored {lua} (the site's own) at the next submission (it "
                    "was given a fresh mtime); `scontrol reconfigure` loads it now. Keep lua in "
                    "JobSubmitPlugins: the site's job_submit.lua needs it"]
        return [f"note    {lua} is gone: slurm.conf must not name lua in JobSubmitPlugins (keep the site's "
                "other plugins there)"]


def _site_backup(backup: str | None, path: str) -> bool:
    """The backup install recorded for ``path`` is there, and is the site's file (to be restored)."""
    return bool(backup) and _is_file(Path(backup)) and not fabric_copy(backup)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _mtime_ns(path: Path) -> int:
    try:
        return os.lstat(path).st_mtime_ns
    except OSError:
        return 0


def _newer_than(path: Path, mtime_ns: int) -> None:
    """Give ``path`` an mtime of now, and in a later second than ``mtime_ns`` (slurmctld compares whole
    seconds, and reloads job_submit.lua only for a newer one: 22.05 than the time it last loaded it, so
    a file written in the second of a load is not reloaded; a restored backup keeps its old mtime)."""
    second = 1_000_000_000
    now = time.time_ns()
    os.utime(path, ns=(now, max(now, (mtime_ns // second + 1) * second)))


def _is_file(path: Path) -> bool:
    return os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode)


def _chmod(path: Path, mode: int) -> None:
    """chmod only when the mode differs (a rerun that changes nothing touches nothing); through an fd
    opened without following a symlink (:func:`_give`)."""
    _give(path, None, None, mode)


def _missing_parents(path: Path, root: Path) -> list[Path]:
    """The directories above ``path`` that do not exist yet, below ``root``."""
    out, p = [], path.parent
    while not p.exists() and p != root and p != p.parent:
        out.append(p)
        p = p.parent
    return out
