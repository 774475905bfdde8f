"""The TaskProlog's fast path, and the pure rules it shares with :mod:`fabric_hpc.slurm.prolog`.

STANDARD LIBRARY ONLY: ``plugins/task_prolog.py`` loads this file by its path (so that neither
``fabric_hpc/__init__`` nor ``fabric_hpc.slurm``'s imports run) once per task, at every job start.
:mod:`fabric_hpc.slurm.prolog` imports the rules from here (one source of truth) and raises
:class:`Refused` as its ``ConfigError``.

The root Prolog writes, next to the host's NCCL topology file, ``task-hints-<host>.json``:
``{"format": 1, "host": …, "digest": …, "topo_sha256": …, "gpus": [[numa, rail], …]}``: the NUMA
node and rail of each GPU of the host (by host index), the SHA-256 of the topology file it wrote,
and ``digest``, the SHA-256 of the prolog config's bytes and the fabric file's bytes it was computed
from. :func:`fast_exports` gives the TaskProlog's exports from that file and the task's environment,
exactly as ``task_exports`` would; it gives None -- the caller then takes the full path -- whenever
anything is missing, stale, untrusted or unusual (the config or fabric file changed, the hints file
is not root's or is writable by others, a GPU outside the host, a checkpoint directory it cannot give).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_COMPONENT = 64
MAX_TOPO_BYTES = 4 << 20
MAX_CONFIG_BYTES = 1 << 20  # prolog.json is a few hundred bytes
MAX_FABRIC_BYTES = 64 << 20  # a larger fabric file: no hints file, the full path every time
MAX_HINTS_BYTES = 1 << 18
HINTS_FORMAT = 1
_HINT_KEYS = {"format", "host", "digest", "topo_sha256", "topo_note", "gpus"}
MAX_FACTS_BYTES = 4 << 20  # a discovery sidecar: a few kilobytes per GPU and HCA


class Refused(Exception):
    """A check that failed: ``message`` and ``hint`` (the fix). ``fabric_hpc.slurm.prolog`` raises
    it as a ``ConfigError``; this module cannot import fabric_hpc's error tree cheaply."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


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


def job_user() -> str:
    """The job's user: the real uid of this process (the TaskProlog runs as the job's user)."""
    uid = os.getuid()
    try:
        return safe_component(pwd.getpwuid(uid).pw_name, default=f"uid{uid}", tag=False)
    except KeyError:
        return f"uid{uid}"


def owned_dir(st: os.stat_result, uid: int) -> bool:
    """The checkpoint rule (the TaskProlog's, and the agent's when it reads a job's checkpoint time:
    :mod:`fabric_hpc.slurm.ckpt_time`): ``<root>/<user>`` and the job's directory below it are
    directories of the job's uid (``lstat``/``fstat``: never a symlink), not someone else's in a
    shared root."""
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid


def job_dir_name(env: Mapping[str, str]) -> str:
    """The last component of :func:`checkpoint_dir`: the job name as :func:`safe_component`, and
    ``+task<N>`` for task N of a job array."""
    name = safe_component(env.get("SLURM_JOB_NAME") or env.get("SLURM_JOB_ID") or "job")
    task = env.get("SLURM_ARRAY_TASK_ID") or ""
    if task.isascii() and task.isdigit() and len(task) < 10:
        name = f"{name}+task{int(task)}"
    return name


def checkpoint_dir(ckpt_root: str | os.PathLike[str], env: Mapping[str, str]) -> Path:
    """``<root>/<user>/<job name>``, checked to stay inside the user's own directory. A task of a job
    array gets ``<job name>+task<N>`` (``SLURM_ARRAY_TASK_ID``): the tasks share the job name and
    would refuse each other's directory; ``+`` never occurs in a kept name, and a tagged one ends in
    16 hex digits, so no other job's directory is ``…+task<N>``."""
    root = Path(os.path.realpath(ckpt_root))
    user_dir = root / job_user()
    path = user_dir / job_dir_name(env)
    for p in (user_dir, path):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            break
        if not owned_dir(st, os.getuid()):
            raise Refused(f"{p} exists but is not a directory of uid {os.getuid()} "
                          f"(a symlink or someone else's)", hint="remove it or ask the admin")
    if os.path.realpath(path) != str(path):
        raise Refused(f"checkpoint directory {path} resolves outside {user_dir}")
    return path


#: Exported beside ``FABRIC_CKPT_DIR``: the job it was given to and a hash of it (``JOBID:HASH``). A job
#: submitted from inside another inherits both (sbatch passes the environment on): its TaskProlog then gives
#: it its own directory, where it used to keep the other job's as one the job had chosen.
CKPT_MARK = "FABRIC_CKPT_FOR"


def ckpt_mark(env: Mapping[str, str], directory: str) -> str:
    """The :data:`CKPT_MARK` value for ``directory`` given to this task's job."""
    return f"{env.get('SLURM_JOB_ID', '')}:{_dir_hash(directory)}"


def _dir_hash(directory: str) -> str:
    return hashlib.sha256(directory.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def chosen_ckpt_dir(env: Mapping[str, str]) -> bool:
    """Whether the job's environment holds a ``FABRIC_CKPT_DIR`` of its own choosing (kept): one set, and not
    the one a TaskProlog gave another job, inherited unchanged (its mark names another job and its hash)."""
    directory = env.get("FABRIC_CKPT_DIR")
    if not directory:
        return False
    job, _, digest = env.get(CKPT_MARK, "").rpartition(":")
    return not (digest == _dir_hash(directory) and job != env.get("SLURM_JOB_ID", ""))


def ckpt_exports(ckpt_root: str | os.PathLike[str], env: Mapping[str, str]) -> dict[str, str]:
    """``FABRIC_CKPT_DIR`` and its mark, none where the job chose its own directory
    (:func:`chosen_ckpt_dir`)."""
    if chosen_ckpt_dir(env):
        return {}
    directory = str(checkpoint_dir(ckpt_root, env))
    return {"FABRIC_CKPT_DIR": directory, CKPT_MARK: ckpt_mark(env, directory)}


def _id_list(raw: str | None) -> list[int]:
    """A Slurm GPU id list (``0,5``): at most 1,024 small integers of ASCII digits (``٣`` and ``²`` are
    digits to ``str.isdigit``, not ids); anything else is skipped."""
    return [int(x) for x in (raw or "").split(",")[:1024] if re.fullmatch(r"\s*[0-9]{1,5}\s*", x, re.ASCII)]


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


def host_name(env: Mapping[str, str]) -> str:
    """This node's name as Slurm gives it to the Prolog and the TaskProlog."""
    return env.get("SLURMD_NODENAME") or env.get("SLURM_TOPOLOGY_ADDR", "").rsplit(".", 1)[-1]


def gpu_exports(table: Sequence[Sequence[int]], visible: list[int],
                physical: list[int]) -> dict[str, str] | None:
    """CUDA_VISIBLE_DEVICES sorted by (NUMA node, rail, host index) and the CPU binding hints, from
    ``table`` (``[numa, rail]`` of each host GPU); None when a GPU is not one of ``table``'s."""
    if not visible:
        return {}
    phys = dict(zip(visible, physical, strict=True))
    if len(phys) != len(visible) or not all(0 <= p < len(table) for p in phys.values()):
        return None
    order = sorted(visible, key=lambda i: (table[phys[i]][0], table[phys[i]][1], phys[i]))
    numa = [table[phys[i]][0] for i in order]
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, order)),
            "FABRIC_NUMA_NODES": ",".join(str(n) for n in sorted(set(numa))),
            "FABRIC_CPU_BIND": "map_ldom:" + ",".join(map(str, numa))}


def trusted_dir(path: Path, uid: int) -> None:
    """``path`` is a real directory owned by root or ``uid`` and writable by no one else; every
    directory above it is owned by root or ``uid`` and writable by others only when sticky."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{path} is not a directory (a symlink or another kind of file)",
                      hint="give the real directory, not a symlink to it (--dir of fabric slurm "
                           "topo-files, topo_dir of prolog.json)")
    if st.st_uid not in (0, uid) or st.st_mode & 0o022:
        raise Refused(f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
                      "only root or the job's user may write it",
                      hint=f"chown root {path} && chmod go-w {path}, or use a directory only root writes")
    for parent in Path(os.path.realpath(path)).parents:
        pst = os.stat(parent)
        if pst.st_uid not in (0, uid) or (pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX):
            raise Refused(f"{parent} (above {path}) is writable by other users",
                          hint=f"chmod go-w {parent} (or +t, as /tmp has), or use a directory whose "
                               "parents only root writes")


def read_trusted(path: Path, uid: int, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes (and stat) of a regular file in a :func:`trusted_dir` of ``uid``, owned by root or
    ``uid``, not group/other-writable, at most ``limit`` bytes; opened with ``O_NOFOLLOW``."""
    trusted_dir(path.parent, uid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"{path}: cannot open it safely ({exc.strerror}: a symlink or missing)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path} is not a regular file")
        if st.st_uid not in (0, uid) or st.st_mode & 0o022:
            raise Refused(f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
                          "not trusted (owner root or the job's user, not group/other-writable)")
        if st.st_size > limit:
            raise Refused(f"{path} is larger than {limit} bytes")
        return os.read(fd, limit + 1), st
    finally:
        os.close(fd)


def _read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file's bytes (a FIFO or device is refused before it is read), at most ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise Refused(f"{path}: not a regular file of at most {limit} bytes")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
        return data
    finally:
        os.close(fd)


def read_sources(config_path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """(the prolog config as plain JSON, the digest of the config's and the fabric file's bytes).
    The Prolog takes the digest BEFORE it loads them: a file changed in between gives a digest that
    no longer matches, never hints of one version under the digest of another."""
    data = _read_regular(config_path, MAX_CONFIG_BYTES)
    cfg = json.loads(data)
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), str) and cfg[k]
                                            for k in ("topology", "topo_dir", "ckpt_root")):
        raise Refused(f"{config_path}: not a prolog config")
    fabric = _read_regular(cfg["topology"], MAX_FABRIC_BYTES)
    digest = hashlib.sha256(b"%d\0%s\0%s" % (len(data), data, fabric)).hexdigest()
    return cfg, digest


def topo_path(topo_dir: str | os.PathLike[str], host: str) -> Path:
    return Path(topo_dir) / f"nccl-topo-{safe_component(host, default='host')}.xml"


def facts_path(topo_dir: str | os.PathLike[str], host: str) -> Path:
    """The host's discovery sidecar in ``topo_dir`` (written by ``fabric topology discover -o
    <topo_dir>/<host>.yaml``)."""
    return Path(topo_dir) / f"{safe_component(host, default='host')}.facts.json"


def hints_path(topo_dir: str | os.PathLike[str], host: str) -> Path:
    return Path(topo_dir) / f"task-hints-{safe_component(host, default='host')}.json"


def _load_hints(path: Path, uid: int) -> dict[str, Any] | None:
    data, st = read_trusted(path, uid, MAX_HINTS_BYTES)
    hints = json.loads(data)
    if st.st_uid != 0 or not isinstance(hints, dict) or set(hints) != _HINT_KEYS:
        return None
    gpus, texts = hints["gpus"], [hints[k] for k in ("host", "digest", "topo_note")]
    if (type(hints["format"]) is not int or hints["format"] != HINTS_FORMAT
            or not all(isinstance(t, str) for t in texts)
            or not isinstance(hints["topo_sha256"], (str, type(None)))
            or not (gpus is None and hints["topo_sha256"] is None and texts[2]  # a host outside the model
                    or isinstance(gpus, list) and len(gpus) <= 4096 and all(map(_gpu_row, gpus)))):
        return None
    return hints


def _gpu_row(row: Any) -> bool:
    """``[numa, rail]`` of one GPU in a hints file."""
    return isinstance(row, list) and len(row) == 2 and all(type(v) is int for v in row)


def fast_exports(config_path: str | os.PathLike[str], env: Mapping[str, str]) -> dict[str, str] | None:
    """The task's exports from the root Prolog's hints file, or None: take the full path."""
    found = fast_result(config_path, env)
    return None if found is None else found[0]


def fast_result(config_path: str | os.PathLike[str],
                env: Mapping[str, str]) -> tuple[dict[str, str], list[str]] | None:
    """(the task's exports, notes) from the root Prolog's hints file, or None: take the full path.
    A host the Prolog wrote no NCCL topology file for (no discovered bus ids) gets no
    ``NCCL_TOPO_FILE`` and the Prolog's reason as a note."""
    uid = os.getuid()
    try:
        cfg, digest = read_sources(config_path)
        host, topo_dir = host_name(env), cfg["topo_dir"]
        hints = _load_hints(hints_path(topo_dir, host), uid)
        if hints is None or hints["host"] != host or hints["digest"] != digest:
            return None
        topo, notes = topo_path(topo_dir, host), []
        if hints["topo_sha256"] is not None and (hashlib.sha256(read_trusted(topo, uid, MAX_TOPO_BYTES)[0])
                                                 .hexdigest() != hints["topo_sha256"]):
            return None
        if hints["gpus"] is None:  # not a host of the model: the Prolog's reason, as the full path says it
            out = {}
            if physical_gpus(env)[1]:
                notes.append(f"no topology hints ({hints['topo_note']})")
        elif (out := gpu_exports(hints["gpus"], *physical_gpus(env))) is None:
            return None
        elif hints["topo_sha256"] is not None:
            out["NCCL_TOPO_FILE"] = str(topo)
        else:
            notes.append(f"no NCCL_TOPO_FILE: {hints['topo_note']}")
        out.update(ckpt_exports(cfg["ckpt_root"], env))  # one the job chose itself is kept
        return out, notes
    except (Refused, OSError, ValueError, TypeError, KeyError):
        return None


def export_lines(exports: Mapping[str, str | None], notes: Sequence[str] = ()) -> str:
    """``export NAME=value`` lines (Slurm reads these from TaskProlog's standard output; ``unset NAME`` for
    a None value), then a ``print`` line per note. A value with a control character is never exported."""
    lines = [f"unset {k}\n" if v is None else f"export {k}={v}\n" for k, v in exports.items()
             if re.fullmatch(r"[A-Z_][A-Z0-9_]*", k) and (v is None or not re.search(r"[\x00-\x1f\x7f]", v))]
    lines += [f"print fabric task_prolog: {re.sub(r'[^ -~]', '?', n)[:300]}\n" for n in notes]
    return "".join(lines)
