"""What the Prolog and the TaskProlog do for each job (``plugins/prolog.py``, ``plugins/task_prolog.py``).

The TaskProlog exports, per task:

* ``CUDA_VISIBLE_DEVICES``: the task's GPUs ordered by NUMA node, then rail, then index, so that
  rank-local GPU 0 sits next to the CPUs and NIC it is bound to (under ``ConstrainDevices=yes``
  the visible ids are the task's own, paired with the host's in ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``).
* ``NCCL_TOPO_FILE``: the NCCL topology XML of this host generated from the fabric model
  (:func:`fabric_hpc.topology.export.nccl_topo_xml`) -- only a file that passes
  :func:`check_topo_file`.
* ``FABRIC_NUMA_NODES`` / ``FABRIC_CPU_BIND``: CPU binding hints (``srun --cpu-bind=map_ldom:…``).
* ``FABRIC_CKPT_DIR``: the job's checkpoint directory, ``<root>/<user>/<job name>`` (stable across
  requeues and resubmissions, so a restarted job finds its checkpoints).

Many users, one cluster: the TaskProlog runs as the job's user, and everything in its
environment (job name, comment, every ``SLURM_*`` value) is the user's to choose. So:

* The user is the process's real uid (``pwd``), never an environment value; the user and job
  name become single safe path components (:func:`safe_component`: ``[A-Za-z0-9_.-]``, never
  ``.``/``..`` or hidden, at most 64 characters; a name that needs changing gets a hash of itself,
  so distinct names never share a directory) and the checkpoint directory must resolve
  (``realpath``) to ``<root>/<user>/<name>`` exactly, through directories of that user.
* Topology files are written by root: the slurmd ``Prolog`` (``plugins/prolog.py``) or
  ``fabric slurm topo-files`` at install, into ``topo_dir``, a root-owned directory nobody else
  can write. Without a root-run piece, set ``user_topo_dir`` (e.g. ``/tmp/fabric-nccl-{uid}``):
  each user's TaskProlog keeps its own copy there, in a 0700 directory only that user owns.
* A file is exported only when it is a regular file (opened with ``O_NOFOLLOW``: not a symlink,
  not a FIFO), owned by root or the job's user, not group/other-writable, in a directory with
  the same properties (and every directory above it owned by root or the user and writable by
  others only when sticky), at most 4 MiB, and parses as an NCCL ``<system>`` XML.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.atomic import write_atomic
from fabric_hpc.topology import Fabric

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_COMPONENT = 64
MAX_TOPO_BYTES = 4 << 20
MAX_CONFIG_BYTES = 1 << 20  # prolog.json is a few hundred bytes


def safe_component(value: str | bytes | None, default: str = "job", *, tag: bool = True) -> str:
    """``value`` as one safe path component: ``[A-Za-z0-9_.-]``, no leading dot (so never ``.``, ``..``
    or hidden), non-empty, at most ``MAX_COMPONENT`` characters.

    A value that already is one is kept as it is (checkpoint directories of existing jobs do not
    move). Any other value gets its unsafe characters (and a leading dot) as ``_`` plus ``+`` and
    16 hex digits of the SHA-256 of the original bytes: ``+`` never occurs in a kept value, so two
    different names never share a component (``.hidden`` -> ``_hidden+…``, not ``_hidden``). A safe
    value over 64 characters keeps its first 55, ``-`` and 8 hex digits of its SHA-256 (as before).

    ``tag=False`` (the user name: :func:`job_user`) keeps the earlier mapping, ``_`` only, so the
    directories of users such as ``ann@example.org`` do not move; two users who map to one name
    cannot share it anyway (the directory must be the job's uid's, :func:`checkpoint_dir`)."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else (value or b"")
    if not raw:
        return default
    text = raw.decode("ascii", "replace")
    if (_UNSAFE.search(text) or text.startswith(".")) and tag:
        cleaned = re.sub(r"^\.", "_", _UNSAFE.sub("_", text))
        return f"{cleaned[:MAX_COMPONENT - 17]}+{hashlib.sha256(raw).hexdigest()[:16]}"
    text = re.sub(r"^\.", "_", _UNSAFE.sub("_", text))
    if len(text) > MAX_COMPONENT:
        text = text[:MAX_COMPONENT - 9] + "-" + hashlib.sha256(raw).hexdigest()[:8]
    return text


_CONFIG_KEYS = {"topology": True, "topo_dir": True, "ckpt_root": True, "user_topo_dir": False}


def load_prolog_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON settings shared by the Prolog and the TaskProlog: ``topology``, ``topo_dir``,
    ``ckpt_root`` (required) and ``user_topo_dir`` (optional, ``{uid}`` is replaced). Read through the
    input boundary (:mod:`fabric_hpc.inputs`): a regular UTF-8 file of at most 1 MiB (a FIFO or device,
    which ``FABRIC_PROLOG_CONFIG`` may name, is refused before it is read), strict JSON."""
    from fabric_hpc.inputs import load_json, read_bytes

    cfg = load_json(read_bytes(path, what="prolog config", limit=MAX_CONFIG_BYTES), os.fspath(path))
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
    missing = sorted(k for k, req in _CONFIG_KEYS.items() if req and k not in cfg)
    if unknown or missing or not all(isinstance(v, str) and v for v in cfg.values()):
        raise ConfigError(f"{path}: unknown keys {unknown}, missing keys {missing} (every value a "
                          f"non-empty string; valid keys: {sorted(_CONFIG_KEYS)})")
    return cfg


def ordered_gpus(fab: Fabric, host: str, visible: list[int], physical: list[int] | None = None) -> list[int]:
    """Visible GPU ids sorted by (NUMA node, rail, index) of the fabric model. ``physical``: the
    host's GPU index of each visible id, in step with it (None: the ids are the host's indices)."""
    gpus = fab.host_gpus(host)
    phys = dict(zip(visible, physical if physical is not None else visible, strict=True))
    info = {i: fab.gpu(gpus[p]) for i, p in phys.items() if 0 <= p < len(gpus)}
    if len(info) != len(visible):
        raise ConfigError(f"{host}: GPUs {sorted(phys.values())} are not all GPUs of the fabric model's host")
    return sorted(visible, key=lambda i: (info[i].numa, info[i].rail, phys[i]))


def _id_list(raw: str | None) -> list[int]:
    """A Slurm GPU id list (``0,5``): at most 1,024 small integers; anything else is skipped."""
    return [int(x) for x in (raw or "").split(",")[:1024] if x.strip().isdigit() and len(x.strip()) < 6]


def physical_gpus(env: Mapping[str, str]) -> tuple[list[int], list[int]]:
    """(the task's ``CUDA_VISIBLE_DEVICES`` ids, the host's GPU index of each). With
    ``ConstrainDevices=yes`` Slurm numbers the visible GPUs from 0 inside the task's cgroup and
    gives their host indices, in the same order, in ``SLURM_STEP_GPUS`` (``SLURM_JOB_GPUS`` in the
    batch step); without it the two lists are equal. A global list of another length cannot be
    paired: the visible ids are then taken as host indices."""
    visible = _id_list(env.get("CUDA_VISIBLE_DEVICES"))
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        global_ids = _id_list(env.get(name))
        if global_ids:
            return visible, (global_ids if len(global_ids) == len(visible) else visible)
    return visible, visible


def job_host(fab: Fabric, env: Mapping[str, str]) -> str:
    host = env.get("SLURMD_NODENAME") or env.get("SLURM_TOPOLOGY_ADDR", "").rsplit(".", 1)[-1]
    if host not in fab.host_pos:
        raise ConfigError(f"node {host[:80]!r} is not a host of the fabric model {fab.name!r}")
    return host


def task_exports(fab: Fabric, env: Mapping[str, str], *, topo_dir: str | os.PathLike[str],
                 ckpt_root: str | os.PathLike[str], user_topo_dir: str | None = None,
                 notes: list[str] | None = None) -> dict[str, str]:
    """The ``export NAME=value`` pairs for one task, from its Slurm environment. A hint that
    cannot be given safely is left out, with the reason appended to ``notes``."""
    host = job_host(fab, env)
    out: dict[str, str] = {}
    notes = notes if notes is not None else []
    visible, physical = physical_gpus(env)
    if visible:
        order = ordered_gpus(fab, host, visible, physical)
        out["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, order))
        host_index = dict(zip(visible, physical, strict=True))
        numa = [fab.gpu(fab.host_gpus(host)[host_index[i]]).numa for i in order]
        out["FABRIC_NUMA_NODES"] = ",".join(str(n) for n in sorted(set(numa)))
        out["FABRIC_CPU_BIND"] = "map_ldom:" + ",".join(map(str, numa))
    for name, get in (("NCCL_TOPO_FILE", lambda: topo_file(fab, host, topo_dir, user_topo_dir)),
                      ("FABRIC_CKPT_DIR", lambda: checkpoint_dir(ckpt_root, env))):
        try:
            out[name] = str(get())
        except (ConfigError, OSError) as exc:
            notes.append(f"no {name}: {exc}".replace("\n", " "))
    return out


def job_user() -> str:
    """The job's user: the real uid of this process (the TaskProlog runs as the job's user)."""
    uid = os.getuid()
    try:
        return safe_component(pwd.getpwuid(uid).pw_name, default=f"uid{uid}", tag=False)
    except KeyError:
        return f"uid{uid}"


def checkpoint_dir(ckpt_root: str | os.PathLike[str], env: Mapping[str, str]) -> Path:
    """``<root>/<user>/<job name>``, checked to stay inside the user's own directory."""
    root = Path(os.path.realpath(ckpt_root))
    user_dir = root / job_user()
    name = safe_component(env.get("SLURM_JOB_NAME") or env.get("SLURM_JOB_ID") or "job")
    path = user_dir / name
    for p in (user_dir, path):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            break
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise ConfigError(f"{p} exists but is not a directory of uid {os.getuid()} "
                              f"(a symlink or someone else's)", hint="remove it or ask the admin")
    if os.path.realpath(path) != str(path):
        raise ConfigError(f"checkpoint directory {path} resolves outside {user_dir}")
    return path


def _trusted_dir(path: Path, uid: int) -> None:
    """``path`` is a real directory owned by root or ``uid`` and writable by no one else; every
    directory above it is owned by root or ``uid`` and writable by others only when sticky."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a directory (a symlink or another kind of file)",
                          hint="give the real directory, not a symlink to it (--dir of fabric slurm "
                               "topo-files, topo_dir of prolog.json)")
    if st.st_uid not in (0, uid) or st.st_mode & 0o022:
        raise ConfigError(f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
                          "only root or the job's user may write it",
                          hint=f"chown root {path} && chmod go-w {path}, or use a directory only root writes")
    for parent in Path(os.path.realpath(path)).parents:
        pst = os.stat(parent)
        if pst.st_uid not in (0, uid) or (pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX):
            raise ConfigError(f"{parent} (above {path}) is writable by other users",
                              hint=f"chmod go-w {parent} (or +t, as /tmp has), or use a directory whose "
                                   "parents only root writes")


def check_topo_file(path: str | os.PathLike[str], uid: int | None = None) -> bytes:
    """The bytes of a topology file that may be exported to a job of ``uid`` (default: this
    process's); a ConfigError saying why not otherwise."""
    uid = os.getuid() if uid is None else uid
    path = Path(path)
    _trusted_dir(path.parent, uid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open it safely ({exc.strerror}: a symlink or missing)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        if st.st_uid not in (0, uid) or st.st_mode & 0o022:
            raise ConfigError(f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
                              "not trusted (owner root or the job's user, not group/other-writable)")
        if st.st_size > MAX_TOPO_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_TOPO_BYTES} bytes")
        data = os.read(fd, MAX_TOPO_BYTES + 1)
    finally:
        os.close(fd)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ConfigError(f"{path}: a DOCTYPE or entity has no place in an NCCL topology file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ConfigError(f"{path} does not parse as XML ({exc})") from None
    if root.tag != "system":
        raise ConfigError(f"{path} is not an NCCL topology file (root element <{root.tag}>)")
    return data


def topo_path(topo_dir: str | os.PathLike[str], host: str) -> Path:
    return Path(topo_dir) / f"nccl-topo-{safe_component(host, default='host')}.xml"


def write_topo(fab: Fabric, host: str, topo_dir: str | os.PathLike[str], *, dir_mode: int = 0o755) -> Path:
    """Write (atomically, mode 0644) the host's NCCL XML into ``topo_dir``, a directory that must
    be trusted for this process's uid (created with ``dir_mode`` when missing). Rewritten only
    when the file there is missing, untrusted or different."""
    from fabric_hpc.topology.export import nccl_topo_xml

    directory, uid = Path(topo_dir), os.getuid()
    if not os.path.lexists(directory):
        directory.mkdir(parents=True, mode=dir_mode)
        os.chmod(directory, dir_mode)
    _trusted_dir(directory, uid)
    path = topo_path(directory, host)
    data = nccl_topo_xml(fab, host).encode()
    try:
        if check_topo_file(path) == data:
            return path
    except ConfigError:
        pass
    return write_atomic(path, data, mode=0o644)  # replaces whatever entry was there (file, symlink, FIFO)


def topo_file(fab: Fabric, host: str, topo_dir: str | os.PathLike[str], user_topo_dir: str | None) -> Path:
    """The topology file to export: root's copy in ``topo_dir`` when it checks out, else the
    user's own copy under ``user_topo_dir`` (``{uid}`` replaced), written there if needed."""
    shared = topo_path(topo_dir, host)
    try:
        check_topo_file(shared)
        return shared
    except (ConfigError, OSError) as exc:
        if not user_topo_dir:
            raise ConfigError(f"no trusted topology file: {exc}",
                              hint="run plugins/prolog.py as the slurmd Prolog (root), or "
                                   "`fabric slurm topo-files` as root, or set user_topo_dir") from None
    own = write_topo(fab, host, user_topo_dir.replace("{uid}", str(os.getuid())), dir_mode=0o700)
    check_topo_file(own)
    return own


def export_lines(exports: Mapping[str, str], notes: Sequence[str] = ()) -> str:
    """``export NAME=value`` lines (Slurm reads these from TaskProlog's standard output), then a
    ``print`` line per note. A value with a control character is never exported."""
    lines = [f"export {k}={v}\n" for k, v in exports.items()
             if re.fullmatch(r"[A-Z_][A-Z0-9_]*", k) and not re.search(r"[\x00-\x1f\x7f]", v)]
    lines += [f"print fabric task_prolog: {re.sub(r'[^ -~]', '?', n)[:300]}\n" for n in notes]
    return "".join(lines)
