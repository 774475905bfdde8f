"""The ``pyslurm`` backend: Slurm's C API through pyslurm's object API (pyslurm 25.11.x on Slurm 25.11).

PyPI's pyslurm 25.11.x compiles only against Slurm 25.11 (its libslurm), so this backend is for
Slurm 25.11 clusters; on older releases use ``cli`` or ``rest``.

Two properties of libslurm shape this module:

* ``import pyslurm`` runs ``slurm_init``, which ends the whole process (``exit``) when it finds no
  slurm.conf. :func:`load_pyslurm` therefore imports pyslurm only after ``SLURM_CONF`` is checked to
  name an existing, readable file, and never at module import time.
* libslurm reads one slurm.conf per process: once imported, pyslurm talks to that cluster until the
  process ends. A second :class:`PyslurmClient` for another slurm.conf in the same process is refused
  (a :class:`SlurmError`), never silently pointed at the first cluster. Use one process per cluster
  (the contract tests run each cluster's pyslurm client in its own worker process).

What pyslurm reads is checked field by field: an attribute of the wrong type or an unreadable value
is a :class:`SlurmError` naming the object and the field, never a ``TypeError``.

One field comes from Slurm's ``squeue`` instead: a job's ``TresPerJob`` (``--gpus=N``,
:attr:`Job.gpus_per_job`). pyslurm 25.11.2 (and its source as of 2026-12) has no reading of it:
``Job.tres_per_job`` parses Slurm's ``gres/gpu:16`` as ``key=value`` pairs and gives None, and nothing else
of a pending job says it asked for GPUs that way (``requested_tres`` has them only where
``AccountingStorageTRES`` counts ``gres/gpu``, and then as the largest of the per-job, per-node and
per-task totals). :meth:`PyslurmClient.job` (``fabric slurm why``) therefore runs one
``squeue -O JobId,tres-per-job``; :meth:`~PyslurmClient.jobs`, the agent's read each cycle, leaves it 0
(the contract's "not read by the backend"): nothing in the cycle uses it.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm import segment
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.client import UNKNOWN_JOB_HINT, check_slurm_conf
from fabric_hpc.slurm.segment import segment_size
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError, queued
from fabric_hpc.slurm.parse import normal_reason
from fabric_hpc.slurm.parse import (ACTIVE_STATES, RUNNING_STATES, gpu_indices, gpu_types, gpus_requested,
                                     hosts,
                                     parse_gres, parse_state)

#: The slurm.conf libslurm was initialised with in this process (None: pyslurm not loaded here).
_BOUND_CONF: str | None = None
ESLURM_INVALID_JOB_ID = 2017
#: Slurm's errnos of a controller it could not reach or talk to (slurm_errno.h: 1000-1999 message and
#: communication errors, 5000-5999 socket errors); other errnos are slurmctld refusing the request
_UNREACHABLE_ERRNOS = (range(1000, 2000), range(5000, 6000))
INSTALL_HINT = ("pip install pyslurm==25.11.* (builds against Slurm 25.11's headers: SLURM_INCLUDE_DIR, "
                "SLURM_LIB_DIR; from a checkout of fabric-hpc: make pyslurm); or use --backend cli")


def load_pyslurm(conf: str | None = None) -> Any:
    """Import pyslurm bound to ``conf`` (default ``$SLURM_CONF``); SlurmError when it cannot be used here."""
    global _BOUND_CONF
    conf = conf or os.environ.get("SLURM_CONF")
    if not conf:
        raise SlurmError("the pyslurm backend needs SLURM_CONF set to the cluster's slurm.conf "
                         "(without it libslurm ends the process on import)",
                         hint="export SLURM_CONF=/etc/slurm/slurm.conf")
    check_slurm_conf(conf, "pyslurm cannot be loaded")
    real = os.path.realpath(conf)
    if _BOUND_CONF is not None and _BOUND_CONF != real:
        raise SlurmError(f"pyslurm in this process is bound to {_BOUND_CONF}; it cannot also talk to {real} "
                         "(libslurm reads one slurm.conf per process)",
                         hint="use one process per cluster, or --backend cli")
    os.environ["SLURM_CONF"] = conf  # what libslurm's slurm_init reads when pyslurm is imported
    try:
        import pyslurm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SlurmError(f"pyslurm is not importable: {exc}", hint=INSTALL_HINT) from None
    _BOUND_CONF = real
    return pyslurm


def release(ps: Any) -> str | None:
    """The Slurm release a pyslurm speaks (``25.11`` of pyslurm ``25.11.2``: its first two numbers)."""
    parts = str(getattr(ps, "__version__", "")).split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) else None


def unreachable_hint(ps: Any) -> str:
    """The fix for a pyslurm RPC that did not reach slurmctld or could not talk to it."""
    mine = release(ps) or "its own release"
    return (f"is slurmctld up? (scontrol ping); pyslurm {getattr(ps, '__version__', '')} needs Slurm {mine} "
            f"(slurmctld and libslurm): on any other Slurm use backend = \"cli\" or \"rest\" (--backend cli)")


def _text(exc: Exception) -> str:
    """An error's message without its hint (the hint is about Slurm's text, not this field)."""
    return str(getattr(exc, "message", exc))


def _field(obj: Any, name: str, kind: type | tuple[type, ...], what: str, *, optional: bool = False) -> Any:
    """``obj.name`` checked to be ``kind`` (or None when ``optional``); SlurmError naming the field."""
    try:
        value = getattr(obj, name)
    except UnicodeDecodeError as exc:  # a job name or comment is the user's bytes, not always UTF-8: U+FFFD
        value = bytes(exc.object).decode("utf-8", "replace")  # for a bad byte, as the cli and rest backends
    except Exception as exc:  # a pyslurm property that cannot convert Slurm's value
        raise SlurmError(f"{what}: pyslurm could not read field {name!r}: {type(exc).__name__}: {exc}") from None
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SlurmError(f"{what}: field {name!r} is {type(value).__name__} {value!r}, expected "
                         f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
    return value


def _gres_text(gres: Mapping[Any, Any], field: str, what: str) -> str:
    """pyslurm's GRES dict (``{'gres/gpu': 3}``, ``{'gpu:h100': 8}``) as Slurm's text (``gres/gpu:3``)."""
    items = []
    for key, count in gres.items():
        if not isinstance(key, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SlurmError(f"{what}: field {field!r} has an unreadable item {key!r}: {count!r}")
        items.append(f"{key}:{count}")
    return ",".join(items)


def _gpus(gres: Mapping[Any, Any], field: str, what: str) -> tuple[int, str | None]:
    """(GPU count, GPU type(s): :func:`~fabric_hpc.slurm.parse.gpu_types`) of a GRES dict."""
    try:
        items = [g for g in parse_gres(_gres_text(gres, field, what)) if g.name == "gpu"]
    except SlurmError:
        raise
    except Exception as exc:  # ExternalError of the parser: name the field
        raise SlurmError(f"{what}: field {field!r}: {_text(exc)}") from None
    return sum(g.count for g in items), gpu_types(items)


#: squeue's TresPerJob of each job (``342|gres/gpu:16|``; ``N/A``: none): width 0 prints the whole value.
#: squeue 25.11 exits 0 with every value empty for a field name it does not know (``TresPerJob``), so an
#: empty value is refused, not read as none.
TRES_PER_JOB_FORMAT = "JobId:0|,tres-per-job:0|"
_TRES_LINE = re.compile(r"(\d+)\|([^|]+)\|")


def tres_per_job(text: str) -> dict[int, str]:
    """``squeue -h -O JobId:0|,tres-per-job:0|`` as {job id: TresPerJob} (jobs without one left out; an
    array's tasks repeat their job's line); SlurmError for a line it cannot read."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = _TRES_LINE.fullmatch(line.strip())
        if m is None:
            raise SlurmError(f"squeue answered a TresPerJob line fabric cannot read: {line[:120]!r}",
                             hint=f"expected JOBID|TRES| lines (squeue -h -O '{TRES_PER_JOB_FORMAT}')")
        if m[2] not in ("N/A", "(null)"):
            out[int(m[1])] = m[2]
    return out


def _gpus_per_job(text: str, what: str) -> int:
    try:
        return gpus_requested(text)
    except Exception as exc:  # ExternalError of the parser: name the field
        raise SlurmError(f"{what}: field 'tres_per_job' (squeue TresPerJob): {_text(exc)}") from None


def layout_gpus(layout: Any, what: str) -> dict[str, tuple[int, ...]]:
    """GPU indices per node from ``Job.get_resource_layout_per_node()``:
    ``{'n7': {'gres': {'gpu:h100': {'count': 3, 'indexes': '0-2'}}, ...}}`` -> ``{'n7': (0, 1, 2)}``."""
    if not isinstance(layout, dict):
        raise SlurmError(f"{what}: resource layout is {type(layout).__name__}, expected dict")
    out: dict[str, tuple[int, ...]] = {}
    for node, res in layout.items():
        gres = res.get("gres") if isinstance(res, dict) else None
        if not isinstance(node, str) or not isinstance(gres, dict):
            raise SlurmError(f"{what}: resource layout of node {node!r} has no 'gres' dict: {res!r}")
        texts = []
        for key, item in gres.items():
            if not str(key).startswith("gpu"):
                continue
            if not isinstance(item, dict) or not isinstance(item.get("count"), int) or \
                    not isinstance(item.get("indexes"), str):
                raise SlurmError(f"{what}: resource layout of node {node}: GRES {key!r} is {item!r}, "
                                 "expected {'count': int, 'indexes': str}")
            texts.append(f"{key}:{item['count']}(IDX:{item['indexes']})")
        try:
            indices = gpu_indices(",".join(texts))
        except Exception as exc:
            raise SlurmError(f"{what}: resource layout of node {node}: {_text(exc)}") from None
        if indices:
            out[node] = indices
    return out


def _mib(obj: Any, name: str, what: str) -> int:
    """A memory field in MiB (0: unset, or a pyslurm without the field)."""
    return (_field(obj, name, int, what, optional=True) or 0) if hasattr(obj, name) else 0


def node_from_pyslurm(n: Any, used: tuple[int, ...] = ()) -> Node:
    """A :class:`Node` from a ``pyslurm.Node`` (``used``: GPU indices allocated to jobs there)."""
    name = _field(n, "name", str, "pyslurm node")
    what = f"pyslurm node {name}"
    base, *flags = [p for p in _field(n, "state", str, what).split("+") if p]
    if not base:
        raise SlurmError(f"{what}: field 'state' is empty")
    gpus, gtype = _gpus(_field(n, "configured_gres", dict, what), "configured_gres", what)
    strs = (list, tuple)
    return Node(name=name, state=base.lower().rstrip("*~#$@%!^-"), flags=tuple(f.upper() for f in flags),
                cpus=_field(n, "total_cpus", int, what),
                cpus_alloc=_field(n, "allocated_cpus", int, what, optional=True) or 0,
                gpus=gpus, gpu_type=gtype, gpus_used=used,
                partitions=tuple(str(p) for p in _field(n, "partitions", strs, what, optional=True) or ()),
                features=tuple(str(f) for f in _field(n, "active_features", strs, what, optional=True) or ()),
                mem=_mib(n, "real_memory", what), mem_alloc=_mib(n, "allocated_memory", what))


def job_from_pyslurm(j: Any, per_job: Mapping[int, str] | None = None) -> Job:
    """A :class:`Job` from a ``pyslurm.Job`` (loaded with details: the resource layout is in it); ``per_job``:
    Slurm's TresPerJob by job id (:func:`tres_per_job`; None: not read, ``gpus_per_job`` 0)."""
    job_id = _field(j, "id", int, "pyslurm job")
    what = f"pyslurm job {job_id}"
    state, flags = _state(j, what)
    node_list = hosts(_field(j, "allocated_nodes", str, what, optional=True)) if state != "PENDING" else ()
    gpus: dict[str, tuple[int, ...]] = {}
    if node_list and state in ACTIVE_STATES:
        try:
            layout = j.get_resource_layout_per_node()
        except Exception as exc:
            raise SlurmError(f"{what}: pyslurm could not read the resource layout: {exc}") from None
        gpus = layout_gpus(layout, what)
    per_node, gtype = _gpus(_field(j, "gres_per_node", dict, what, optional=True) or {}, "gres_per_node", what)
    begin = _field(j, "eligible_time", int, what, optional=True)
    start = _field(j, "start_time", int, what, optional=True)
    limit = _field(j, "time_limit", int, what, optional=True)
    return Job(job_id=job_id, name=_field(j, "name", str, what, optional=True) or "", state=state, flags=flags,
               reason=normal_reason(_field(j, "state_reason", str, what, optional=True)),  # or state_desc
               comment=_field(j, "comment", str, what, optional=True) or "",
               user=_field(j, "user_name", str, what, optional=True) or "",
               partition=_field(j, "partition", str, what, optional=True) or "",
               account=_field(j, "account", str, what, optional=True) or "",
               qos=_field(j, "qos", str, what, optional=True) or "",
               nodes=_field(j, "num_nodes", int, what, optional=True) or 1, gpus_per_node=per_node, gpu_type=gtype,
               gpus_per_job=_gpus_per_job(per_job.get(job_id, ""), what) if per_job else 0,
               cpus=_field(j, "cpus", int, what, optional=True) or 0,
               node_list=node_list, req_nodes=hosts(_field(j, "required_nodes", str, what, optional=True)),
               exc_nodes=hosts(_field(j, "excluded_nodes", str, what, optional=True)),
               gpus=gpus, submit_time=float(_field(j, "submit_time", int, what, optional=True) or 0),
               begin_time=float(begin) if begin else None, start_time=float(start) if start else None,
               time_limit_min=limit, priority=_field(j, "priority", int, what, optional=True),
               dependency=_dependency(j, what),
               array_job_id=_field(j, "array_id", int, what, optional=True) or 0,
               het_job_id=_field(j, "heterogeneous_id", int, what, optional=True) or 0,
               reservation=_field(j, "reservation", str, what, optional=True) or "",
               segment_size=(_field(j, "segment_size", int, what, optional=True) or 0  # --segment
                             if hasattr(j, "segment_size") else 0),
               segment_flags=tuple(f.upper() for f in ("spread_segments", "consolidate_segments")
                                   if getattr(j, f, False) is True),  # pyslurm 25.11's Job properties
               requeue=getattr(j, "is_requeueable", None) is not False,
               exclusive=str(getattr(j, "resource_sharing", "") or "").upper() in ("NO", "NONE"),
               mem_per_node=_mib(j, "memory_per_node", what), mem_per_cpu=_mib(j, "memory_per_cpu", what),
               features=",".join(str(f) for f in getattr(j, "constraints", None) or ()))


def _dependency(j: Any, what: str) -> str:
    """pyslurm's ``dependencies`` dict as Slurm's text (``afterok:12(unfulfilled)``; '' when none). pyslurm
    splits the text but keeps each job's state suffix; of a known kind it drops only a suffixed
    ``singleton``, so a dict with nothing read still means a dependency (``singleton``)."""
    deps = _field(j, "dependencies", dict, what, optional=True)
    if not deps:
        return ""
    parts = [f"{kind}:{':'.join(map(str, jobs))}" for kind, jobs in deps.items()
             if isinstance(jobs, list) and jobs]
    parts += ["singleton"] if deps.get("singleton") is True else []
    return ("?" if deps.get("satisfy") == "any" else ",").join(parts) or "singleton"


def _state(j: Any, what: str) -> tuple[str, tuple[str, ...]]:
    try:
        return parse_state(_field(j, "state", str, what))
    except SlurmError:
        raise
    except Exception as exc:
        raise SlurmError(f"{what}: field 'state': {_text(exc)}") from None


#: scontrol update keys -> JobSubmitDescription attributes (what ``update`` accepts)
_UPDATE_KEYS = {"ReqNodeList": "required_nodes", "StartTime": "begin_time", "Comment": "comment",
                "TimeLimit": "time_limit", "ExcNodeList": "excluded_nodes", "Name": "name"}
#: sbatch options -> JobSubmitDescription attributes (what ``submit`` accepts)
_SBATCH = {"-N": "nodes", "--nodes": "nodes", "-n": "ntasks", "--ntasks": "ntasks",
           "--ntasks-per-node": "ntasks_per_node", "-c": "cpus_per_task", "--cpus-per-task": "cpus_per_task",
           "-J": "name", "--job-name": "name", "--comment": "comment", "--gres": "gres_per_node",
           "--gpus-per-node": "gres_per_node", "-t": "time_limit", "--time": "time_limit", "--begin": "begin_time",
           "-w": "required_nodes", "--nodelist": "required_nodes", "-x": "excluded_nodes",
           "--exclude": "excluded_nodes", "-p": "partitions", "--partition": "partitions",
           "-o": "standard_output", "--output": "standard_output", "-e": "standard_error",
           "--error": "standard_error", "-D": "working_directory", "--chdir": "working_directory",
           "--signal": "signal", "--mem": "memory_per_node", "--segment": "segment_size"}
_FLAGS = {"-H": ("priority", 0), "--hold": ("priority", 0), "--exclusive": ("resource_sharing", "exclusive")}


def submit_description(args: Sequence[str]) -> dict[str, Any]:
    """sbatch options as ``JobSubmitDescription`` keyword arguments; ConfigError for any other option."""
    out: dict[str, Any] = {}
    items, i = list(args), 0
    while i < len(items):
        arg = items[i]
        if arg in _FLAGS:
            key, value = _FLAGS[arg]
            out[key] = value
            i += 1
            continue
        opt, eq, value = arg.partition("=")
        if opt not in _SBATCH:
            raise ConfigError(f"the pyslurm backend does not translate sbatch option {arg!r}",
                              hint=f"supported: {' '.join(sorted({*_SBATCH, *_FLAGS}))}; or use --backend cli")
        if not eq:
            if i + 1 >= len(items):
                raise ConfigError(f"sbatch option {opt} needs a value")
            value, i = items[i + 1], i + 1
        attr = _SBATCH[opt]
        out[attr] = _option_value(opt, value)
        i += 1
    if "ntasks" not in out and "ntasks_per_node" not in out and "nodes" in out:
        # sbatch's default: one task per node (pyslurm's default is one task in all, which leaves
        # the other nodes of a multi-node job without a CPU and the job pending forever)
        out["ntasks"] = int(str(out["nodes"]).split("-")[0])
    return out


def _option_value(opt: str, value: str) -> Any:
    """An sbatch option's text in the form JobSubmitDescription takes."""
    if opt == "--gres":
        return value.removeprefix("gres:")
    if opt == "--gpus-per-node":
        return value if value.startswith("gpu:") else f"gpu:{value}"
    if opt == "--segment":  # JobSubmitDescription.segment_size, an int (submission.pyx: u16(segment_size))
        return segment_size(value)
    if opt in ("-t", "--time", "-n", "--ntasks", "--ntasks-per-node", "-c", "--cpus-per-task") and value.isdigit():
        return int(value)  # counts and minutes (pyslurm refuses a digits-only text for a time)
    if opt == "--signal":  # [B|R:]SIG[@seconds] -> pyslurm's dict
        flags, _, rest = value.rpartition(":")
        sig, _, secs = rest.partition("@")
        if not sig or (secs and not secs.isdigit()) or set(flags) - {"B", "R"}:
            raise ConfigError(f"--signal={value}: expected [B:|R:]SIGNAL[@seconds]")
        name = sig if sig.startswith("SIG") else f"SIG{sig}"
        if not sig.isdigit() and name not in signal.Signals.__members__:
            raise ConfigError(f"--signal={value}: unknown signal {sig!r}")
        return {"signal": int(sig) if sig.isdigit() else signal.Signals[name].value, "time": int(secs) if secs else None, "batch_only": "B" in flags,
                "allow_reservation_overlap": "R" in flags}
    return value


class PyslurmClient(SlurmClient):
    """Slurm through pyslurm, bound to ``conf`` (default ``$SLURM_CONF``) for the life of the process."""

    backend = "pyslurm"

    def __init__(self, conf: str | None = None) -> None:
        from fabric_hpc.slurm.cli_backend import CliClient

        self.ps = load_pyslurm(conf)
        # updates that clear a field, and squeue's TresPerJob (SLURM_CONF: set by load_pyslurm)
        self._cli = CliClient()

    def interrupt(self) -> None:
        """The agent's stop: a clearing ``scontrol update`` in flight is killed (pyslurm's own calls hold
        the GIL and cannot be); :meth:`resume` undoes it."""
        self._cli.interrupt()

    def resume(self) -> None:
        self._cli.resume()

    def contact_probe(self) -> list[str]:
        """A command that reads the nodes once and exits 0 when slurmctld answered: the agent's first
        contact runs it with a deadline, as pyslurm's calls hold the GIL (no thread can time them out:
        a frozen slurmctld held them for libslurm's message timeouts, 12 s and more)."""
        import sys

        return [sys.executable, "-c", "import pyslurm; pyslurm.Nodes.load()"]

    def _rpc(self, what: str, call: Callable[[], Any], job_id: int | None = None) -> Any:
        """Run one pyslurm call; its errors as NotFoundError (unknown job) or SlurmError."""
        try:
            return call()
        except self.ps.RPCError as exc:
            errno = getattr(exc, "errno", None)
            if job_id is not None and errno == ESLURM_INVALID_JOB_ID:
                raise NotFoundError(f"Slurm knows no job {job_id} ({what}): {exc}",
                                    hint=UNKNOWN_JOB_HINT) from None
            unreachable = (not isinstance(errno, int) or errno <= 0
                           or any(errno in r for r in _UNREACHABLE_ERRNOS))
            if not unreachable:  # a refusal is Slurm's answer, not an outage
                raise SlurmError(f"pyslurm {what} failed: {exc}") from None
            raise SlurmError(f"pyslurm {what} failed: {exc}{self._release_mismatch()}",
                             hint=unreachable_hint(self.ps)) from None
        except (ValueError, TypeError) as exc:  # pyslurm refusing a value before the RPC
            raise SlurmError(f"pyslurm {what}: {exc}") from None

    def _release_mismatch(self) -> str:
        """`` (pyslurm 25.11.2 talks to Slurm 25.11 only; this Slurm is 22.05.8, scontrol --version)``
        when the Slurm commands here are of another release (one ``scontrol --version``, only after a
        failed RPC); empty when they match or cannot tell."""
        from fabric_hpc.slurm.install_plan import detect_slurm_version

        mine = release(self.ps)
        theirs = detect_slurm_version(dict(os.environ))
        if not mine or not theirs or theirs.split(".")[:2] == mine.split("."):
            return ""
        return (f" (pyslurm {getattr(self.ps, '__version__', mine)} talks to Slurm {mine} only; this Slurm "
                f"is {theirs}, scontrol --version)")

    # -- reads ------------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        loaded = self._rpc("load nodes", self.ps.Nodes.load)
        used: dict[str, set[int]] = {}
        for job in self.jobs():  # pyslurm has no allocated GPU indices per node: the jobs' layouts do
            if job.active:
                for node, idx in job.gpus.items():
                    used.setdefault(node, set()).update(idx)
        return [node_from_pyslurm(n, tuple(sorted(used.get(name, ())))) for name, n in loaded.items()]

    def jobs(self) -> list[Job]:
        """Every job, ``gpus_per_job`` not read (0): the agent's cycle does not use it, and reading it would
        cost one more ``squeue`` of every job each cycle; :meth:`job` reads it (``fabric slurm why``)."""
        return queued(job_from_pyslurm(j) for j in self._rpc("load jobs", self.ps.Jobs.load).values())

    def _tres_per_job(self, job_id: int) -> dict[int, str]:
        """Slurm's TresPerJob of ``job_id`` (:func:`tres_per_job`), by ``squeue``; finished jobs too."""
        return tres_per_job(self._cli.run(["squeue", "-h", "-a", "-j", str(int(job_id)), "-t", "all",
                                           "-O", TRES_PER_JOB_FORMAT]))

    def reservations(self) -> resv.Read:
        """``pyslurm.Reservations.load()`` (pyslurm's flag names: ``MAINTENANCE``,
        ``IGNORE_RUNNING_JOBS``)."""
        return resv.pyslurm_answer(self._rpc("load reservations", self.ps.Reservations.load).values())

    def job(self, job_id: int) -> Job:
        """One job; its ``--gpus=N`` by ``squeue`` where that answers (else 0, "not read"): the agent also
        asks whether a job left pending after a refused action, and a slow squeue must not turn that
        race into a failure."""
        found = self._rpc(f"load job {job_id}", lambda: self.ps.Job.load(int(job_id)), job_id)
        try:
            per_job = self._tres_per_job(job_id)
        except SlurmError:
            per_job = None
        return job_from_pyslurm(found, per_job)

    # -- actions ----------------------------------------------------------------------------
    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        props = submit_description(args)
        props.setdefault("working_directory", cwd or os.getcwd())
        desc = self._rpc("job description", lambda: self.ps.JobSubmitDescription(script=script, **props))
        with segment.submission(args):  # also the node count: a held job Slurm would accept and never run
            job_id = self._rpc("submit", desc.submit)
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
            raise SlurmError(f"pyslurm submit answered {job_id!r} instead of a job id")
        return job_id

    def update(self, job_id: int, **fields: str) -> None:
        if not fields:
            return
        segment.refuse_update(job_id, fields)  # Job.modify's segment_size would be ignored without a warning
        unknown = sorted(set(fields) - set(_UPDATE_KEYS))
        if unknown:
            raise ConfigError(f"the pyslurm backend cannot update {', '.join(unknown)}",
                              hint=f"updatable: {', '.join(sorted(_UPDATE_KEYS))}")
        if "" in fields.values():
            # pyslurm cannot send an empty value (its cstr.fmalloc turns "" into NULL, which slurmctld reads
            # as "no change": an unpin left the pin); scontrol sends the "" that clears a field
            self._cli.update(job_id, **fields)
            return
        changes = {_UPDATE_KEYS[k]: v for k, v in fields.items()}
        desc = self._rpc("job update", lambda: self.ps.JobSubmitDescription(**changes))
        self._rpc(f"update of job {job_id}", lambda: self.ps.Job(int(job_id)).modify(desc), job_id)

    def hold(self, job_id: int) -> None:
        self._rpc(f"hold of job {job_id}", lambda: self.ps.Job(int(job_id)).hold(), job_id)

    def release(self, job_id: int) -> None:
        self._rpc(f"release of job {job_id}", lambda: self.ps.Job(int(job_id)).release(), job_id)

    def requeue(self, job_id: int) -> None:
        """Only a job that still runs (read just before: pyslurm's ``requeue`` cannot pass scontrol's
        ``Incomplete``, so a job ending between the read and the RPC is the one race left); one that is
        ending or has ended is left alone, as ``Incomplete`` leaves it; a pending one (requeued by someone
        else meanwhile) is a SlurmError naming it: its hosts are not freed by this requeue."""
        job = self.job(job_id)
        if job.state in RUNNING_STATES:
            self._rpc(f"requeue of job {job_id}", lambda: self.ps.Job(int(job_id)).requeue(), job_id)
        elif job.pending:
            raise SlurmError(f"job {job_id} is pending, not running: not requeued")

    def cancel(self, job_id: int) -> None:
        self._rpc(f"cancel of job {job_id}", lambda: self.ps.Job(int(job_id)).cancel(), job_id)
