"""What the Prolog and the TaskProlog do for each job (``plugins/prolog.py``, ``plugins/task_prolog.py``).

The TaskProlog exports, per task:

* ``CUDA_VISIBLE_DEVICES``: the task's GPUs ordered by NUMA node, then rail, then index, so that
  rank-local GPU 0 sits next to the CPUs and NIC it is bound to (under ``ConstrainDevices=yes``
  the visible ids are the task's own, paired with the host's in ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``).
* ``NCCL_TOPO_FILE``: the NCCL topology XML of this host, from the fabric model and the host's
  discovery sidecar in ``topo_dir`` (``<host>.facts.json``: its real PCI bus ids and CPU ids,
  :mod:`fabric_hpc.topology.nccl_xml`) -- only a file that passes :func:`check_topo_file`. A host
  without usable facts gets no ``NCCL_TOPO_FILE`` (NCCL then detects the topology itself: better
  than a file of made-up bus ids, whose GPUs NCCL would drop); the reason is a TaskProlog note and
  the Prolog's event ``slurm.prolog.no_nccl_topo_file``.
* ``FABRIC_NUMA_NODES`` / ``FABRIC_CPU_BIND``: CPU binding hints (``srun --cpu-bind=map_ldom:…``).
* ``FABRIC_CKPT_DIR``: the job's checkpoint directory, ``<root>/<user>/<job name>`` (stable across
  requeues and resubmissions, so a restarted job finds its checkpoints; ``<job name>+task<N>`` for
  task N of a job array). A ``FABRIC_CKPT_DIR`` in the job's own environment is kept, not replaced.

The root Prolog (:func:`prepare_node`) also writes the host's hints file, from which the TaskProlog
gives the same exports without loading the fabric model (:mod:`fabric_hpc.slurm.task_fast`, where
the rules below live: the standard library only).

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

import contextlib
import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import task_fast
from fabric_hpc.slurm.task_fast import (  # the rules live there (stdlib only, the TaskProlog's fast path)
    HINTS_FORMAT,
    MAX_COMPONENT,
    MAX_CONFIG_BYTES,
    MAX_TOPO_BYTES,
    export_lines,
    facts_path,
    hints_path,
    job_user,
    physical_gpus,
    safe_component,
    topo_path,
)
from fabric_hpc.topology import Fabric

__all__ = ["MAX_COMPONENT", "MAX_CONFIG_BYTES", "MAX_TOPO_BYTES", "check_topo_file", "checkpoint_dir",
           "export_lines", "job_host", "job_user", "load_prolog_config", "ordered_gpus", "physical_gpus",
           "prepare_node", "safe_component", "task_exports", "topo_file", "topo_path", "write_task_hints",
           "write_topo"]

_T = TypeVar("_T")


def _checked(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)``, its :class:`task_fast.Refused` raised as a ConfigError."""
    try:
        return fn(*args)
    except task_fast.Refused as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None


class NoTopologyFile(ConfigError):
    """No NCCL topology file for a host: its discovery facts are missing or lack bus ids."""


_CONFIG_KEYS = {"topology": True, "topo_dir": True, "ckpt_root": True, "user_topo_dir": False}


def load_prolog_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON settings shared by the Prolog and the TaskProlog: ``topology``, ``topo_dir``,
    ``ckpt_root`` (required) and ``user_topo_dir`` (optional, ``{uid}`` is replaced). Read through the
    input boundary (:mod:`fabric_hpc.inputs`): a regular UTF-8 file of at most 1 MiB (a FIFO or device,
    which the Prolog's ``FABRIC_PROLOG_CONFIG`` may name, is refused before it is read), strict JSON."""
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


def _gpu_table(fab: Fabric, host: str) -> list[list[int]]:
    """``[numa, rail]`` of each GPU of ``host``, by host index (what the TaskProlog's hints file holds)."""
    return [[fab.gpu(g).numa, fab.gpu(g).rail] for g in fab.host_gpus(host)]


def _gpu_hints(fab: Fabric, host: str, visible: list[int], physical: list[int]) -> dict[str, str]:
    out = task_fast.gpu_exports(_gpu_table(fab, host), visible, physical)
    if out is None:
        raise ConfigError(f"{host}: GPUs {sorted(set(physical))} are not all GPUs of the fabric model's host")
    return out


def ordered_gpus(fab: Fabric, host: str, visible: list[int], physical: list[int] | None = None) -> list[int]:
    """Visible GPU ids sorted by (NUMA node, rail, index) of the fabric model. ``physical``: the
    host's GPU index of each visible id, in step with it (None: the ids are the host's indices)."""
    out = _gpu_hints(fab, host, visible, physical if physical is not None else visible)
    return [int(i) for i in out["CUDA_VISIBLE_DEVICES"].split(",")] if out else []


def job_host(fab: Fabric, env: Mapping[str, str]) -> str:
    host = task_fast.host_name(env)
    if host not in fab.host_pos:
        raise ConfigError(f"node {host[:80]!r} is not a host of the fabric model {fab.name!r}")
    return host


def task_exports(fab: Fabric, env: Mapping[str, str], *, topo_dir: str | os.PathLike[str],
                 ckpt_root: str | os.PathLike[str], user_topo_dir: str | None = None,
                 notes: list[str] | None = None) -> dict[str, str | None]:
    """The ``export NAME=value`` pairs for one task, from its Slurm environment (None: ``unset NAME``). A
    hint that cannot be given safely is left out, with the reason appended to ``notes``. The checkpoint
    directory does not depend on the fabric model: a host outside it (a node added since, a CPU node) or GPUs
    the model does not know still get it (the GPU hints are left out; a task without GPUs gets no note)."""
    out: dict[str, str | None] = {}
    notes = notes if notes is not None else []
    try:
        host = job_host(fab, env)
        out.update(_gpu_hints(fab, host, *physical_gpus(env)))
        gets = [("NCCL_TOPO_FILE", lambda: {"NCCL_TOPO_FILE": str(topo_file(fab, host, topo_dir,
                                                                          user_topo_dir))})]
    except ConfigError as exc:
        if physical_gpus(env)[1]:
            notes.append(f"no topology hints ({exc})".replace("\n", " "))
        gets = []
    gets.append(("FABRIC_CKPT_DIR", lambda: _checked(task_fast.ckpt_exports, ckpt_root, env)))
    for name, get in gets:
        try:  # a directory the job chose itself is kept: the job runs as its user, its choice
            out.update(get())
        except (ConfigError, OSError) as exc:
            notes.append(f"no {name}: {exc}".replace("\n", " "))
            if name == "FABRIC_CKPT_DIR" and env.get(name):  # another job's, inherited: never this job's
                out[name] = out[task_fast.CKPT_MARK] = None  # export_lines: unset, with the other job's mark
    return out


def checkpoint_dir(ckpt_root: str | os.PathLike[str], env: Mapping[str, str]) -> Path:
    """``<root>/<user>/<job name>``, checked to stay inside the user's own directory."""
    return _checked(task_fast.checkpoint_dir, ckpt_root, env)


def _trusted_dir(path: Path, uid: int) -> None:
    """``path`` is a real directory owned by root or ``uid`` and writable by no one else; every
    directory above it is owned by root or ``uid`` and writable by others only when sticky."""
    _checked(task_fast.trusted_dir, path, uid)


def check_topo_file(path: str | os.PathLike[str], uid: int | None = None) -> bytes:
    """The bytes of a topology file that may be exported to a job of ``uid`` (default: this
    process's); a ConfigError saying why not otherwise."""
    uid = os.getuid() if uid is None else uid
    data = _checked(task_fast.read_trusted, Path(path), uid, MAX_TOPO_BYTES)[0]
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ConfigError(f"{path}: a DOCTYPE or entity has no place in an NCCL topology file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ConfigError(f"{path} does not parse as XML ({exc})") from None
    if root.tag != "system":
        raise ConfigError(f"{path} is not an NCCL topology file (root element <{root.tag}>)")
    return data


def host_facts(fab: Fabric, host: str, facts_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The host's discovery sidecar (``<facts_dir>/<host>.facts.json``, a trusted file), checked to
    give its NCCL XML; :class:`NoTopologyFile` saying why not otherwise."""
    from fabric_hpc.topology.nccl_xml import missing_ids

    path, facts = facts_path(facts_dir, host), None
    if os.path.lexists(path):
        try:
            data = _checked(task_fast.read_trusted, path, os.getuid(), task_fast.MAX_FACTS_BYTES)[0]
            facts = json.loads(data)
        except (ConfigError, OSError, ValueError) as exc:
            raise NoTopologyFile(f"{path}: not used ({exc})".replace("\n", " ")) from None
    why = missing_ids(fab, host, facts if isinstance(facts, dict) or facts is None else {})
    if why:
        raise NoTopologyFile(f"no discovered PCI bus ids for {host}, so no NCCL topology file (NCCL "
                             f"detects the topology itself): {'; '.join(why)}",
                             hint=f"run `fabric topology discover -o {Path(facts_dir) / host}.yaml` on "
                                  f"{host} as root")
    return facts


def write_topo(fab: Fabric, host: str, topo_dir: str | os.PathLike[str], *, dir_mode: int = 0o755,
               facts_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write (atomically, mode 0644) the host's NCCL XML into ``topo_dir``, a directory that must
    be trusted for this process's uid (created with ``dir_mode`` when missing), from the host's
    discovery facts in ``facts_dir`` (default ``topo_dir``). Rewritten only when the file there is
    missing, untrusted or different. Without usable facts an old file of the host is removed and
    :class:`NoTopologyFile` says why."""
    from fabric_hpc.topology.nccl_xml import nccl_topo_xml

    directory, uid = Path(topo_dir), os.getuid()
    if not os.path.lexists(directory):
        directory.mkdir(parents=True, mode=dir_mode)
        os.chmod(directory, dir_mode)
    _trusted_dir(directory, uid)
    path = topo_path(directory, host)
    try:
        facts = host_facts(fab, host, directory if facts_dir is None else facts_dir)
        data = _xml_bytes(nccl_topo_xml(fab, host, facts), host)
    except NoTopologyFile:
        path.unlink(missing_ok=True)  # a file of made-up bus ids from before: never exported again
        raise
    with contextlib.suppress(ConfigError):
        if check_topo_file(path) == data:
            return path
    return write_atomic(path, data, mode=0o644)  # replaces whatever entry was there (file, symlink, FIFO)


def _xml_bytes(xml: str, host: str) -> bytes:
    """The XML as UTF-8; :class:`NoTopologyFile` when the facts put a non-UTF-8 name into it."""
    try:
        return xml.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end].encode("utf-8", "surrogateescape")
        raise NoTopologyFile(f"no NCCL topology file for {host}: its discovery facts hold a name that is not "
                             f"UTF-8 ({bad!r})", hint=f"rerun `fabric topology discover` on {host}") from None


def topo_file(fab: Fabric, host: str, topo_dir: str | os.PathLike[str], user_topo_dir: str | None) -> Path:
    """The topology file to export: root's copy in ``topo_dir`` when it checks out, else the
    user's own copy under ``user_topo_dir`` (``{uid}`` replaced), written there if needed; none
    (:class:`NoTopologyFile`) for a host without usable discovery facts in ``topo_dir``."""
    host_facts(fab, host, topo_dir)
    shared = topo_path(topo_dir, host)
    try:
        check_topo_file(shared)
        return shared
    except (ConfigError, OSError) as exc:
        if not user_topo_dir:
            raise ConfigError(f"no trusted topology file: {exc}",
                              hint="set slurm.conf's Prolog= to the prolog.py `fabric slurm install` writes "
                                   "(it runs as root), or run `fabric slurm topo-files` as root, "
                                   "or set user_topo_dir") from None
    own = write_topo(fab, host, user_topo_dir.replace("{uid}", str(os.getuid())), dir_mode=0o700,
                     facts_dir=topo_dir)
    check_topo_file(own)
    return own


def write_task_hints(fab: Fabric | None, host: str, topo_dir: str | os.PathLike[str], digest: str,
                     no_topo: str = "") -> Path:
    """Write (atomically, mode 0644) the TaskProlog's hints file for ``host`` next to its topology
    file in ``topo_dir`` (see :mod:`fabric_hpc.slurm.task_fast`); ``digest``: of the sources the
    fabric was loaded from (:func:`task_fast.read_sources`, taken before loading them); ``no_topo``:
    why the host has no topology file (then no ``NCCL_TOPO_FILE``); ``fab`` None: the host is not in
    the fabric model (``no_topo`` says so; its tasks get only the checkpoint directory, and a task with
    GPUs that note). Rewritten only when different."""
    topo = None if no_topo else hashlib.sha256(check_topo_file(topo_path(topo_dir, host))).hexdigest()
    gpus = None if fab is None else _gpu_table(fab, host)
    data = json.dumps({"format": HINTS_FORMAT, "host": host, "digest": digest, "topo_sha256": topo,
                       "topo_note": no_topo, "gpus": gpus}, separators=(",", ":")).encode()
    path = hints_path(topo_dir, host)
    with contextlib.suppress(ConfigError, OSError):
        if _checked(task_fast.read_trusted, path, os.getuid(), task_fast.MAX_HINTS_BYTES)[0] == data:
            return path
    return write_atomic(path, data, mode=0o644)


def prepare_node(config_path: str | os.PathLike[str], env: Mapping[str, str]) -> Path | None:
    """What the root Prolog does on a node: write the host's NCCL topology file (None: the host has
    no usable discovery facts; event ``slurm.prolog.no_nccl_topo_file`` says why) and the TaskProlog's
    hints file (only when this process is root: a hints file is trusted only when root's)."""
    from fabric_hpc.events import emit
    from fabric_hpc.topology import load_fabric

    try:
        digest: str | None = task_fast.read_sources(config_path)[1]  # before loading: see read_sources
    except (task_fast.Refused, OSError, ValueError):
        digest = None  # load_prolog_config says what is wrong
    cfg = load_prolog_config(config_path)
    fab = load_fabric(cfg["topology"])
    try:
        host = job_host(fab, env)
    except ConfigError as exc:  # a node outside the model: its tasks need not load the model to learn it
        if digest is not None and os.getuid() == 0 and task_fast.host_name(env):
            write_task_hints(None, task_fast.host_name(env), cfg["topo_dir"], digest, no_topo=str(exc))
        raise
    path, why = None, ""
    try:
        path = write_topo(fab, host, cfg["topo_dir"], dir_mode=0o755)
    except NoTopologyFile as exc:
        why = exc.message
        emit("slurm.prolog.no_nccl_topo_file", host=host, reason=why)
    if digest is not None and os.getuid() == 0:
        write_task_hints(fab, host, cfg["topo_dir"], digest, no_topo=why)
    return path
