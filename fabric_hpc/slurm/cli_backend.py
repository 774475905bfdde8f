"""The ``cli`` backend: Slurm's own commands (tested with Slurm 22.05 and 25.11).

Reads use ``squeue --json`` and, for nodes, ``sinfo --json`` where it lists nodes (22.05) or ``scontrol show
nodes --json`` (23.02+, whose ``sinfo --json`` has per-partition records); both are decoded by
:mod:`fabric_hpc.slurm.decode`; reservations ``scontrol show reservation --json``, or its ``-o`` text where
this scontrol has no ``--json`` (22.05; :mod:`fabric_hpc.slurm.reservations`). One job is ``scontrol show
job --json ID`` (23.02+), or ``squeue --json`` where scontrol has no ``--json`` (22.05): never the ``-o``
text, whose user text (``JobName``, ``Comment``, ``WorkDir``, ``StdOut``, ``SubmitLine``) may hold
`` Key=value`` that reads as another field. ``scontrol show job -d -o`` (:func:`job_from_scontrol`, which
refuses a line whose keys repeat) and ``scontrol show node -d -o`` remain text readers for recorded
answers and Slurm builds without JSON.
Actions are ``scontrol update/hold/release/requeue``, ``scancel`` and ``sbatch --parsable``. Each call has a
timeout; a failure is a :class:`SlurmError` with Slurm's message.

:func:`run_child` is the one way the slurm package runs any other child process with a deadline (the
pyslurm backend's contact probe, ``scontrol show config``/``--version`` at install, the interpreter
check); the client's own commands run in :meth:`CliClient.run`, which another thread may also stop
(:meth:`CliClient.interrupt`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fabric_hpc.errors import ExternalError, FabricError, NotFoundError
from fabric_hpc.events import emit
from fabric_hpc.slurm import decode, segment
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.client import UNKNOWN_JOB_HINT, check_slurm_conf
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError, queued
from fabric_hpc.slurm.parse import normal_reason
from fabric_hpc.slurm.parse import (gpu_count, gpu_indices, gpus_requested, hosts, job_key_values,
                                   job_node_gres, parse_key_values, parse_state)

Runner = Callable[[Sequence[str], str | None], str]


_UNREACHABLE = ("Could not establish a configuration source", "Unable to contact slurm controller",
                "Unable to establish secure connection", "Zero Bytes were transmitted")


#: Slurm's words for a slurm.conf (or a file it includes) it cannot parse, cannot read, or holding a key this
#: Slurm does not know: parse_config.c (``s_p_parse_file``, ``_parse_next_key``)
_PARSE_ERROR = re.compile(r"Parse error in file (\S[^\n]{0,1000}?) line (\d+)")
_UNREADABLE = (re.compile(r's_p_parse_file: unable to (?:read|open|stat)\w* '
                          r'"([^\n]{1,1000})": ([^\n]{1,200})'),
               re.compile(r"s_p_parse_file: cannot stat file ([^\n]{1,1000}?): ([^,\n]{1,200}), retrying"))
_UNKNOWN_KEY = re.compile(r"Parsing error at unrecognized key: (\S{1,200})")
#: The end of a command's error output read for these (Slurm's own lines are short; the fatal one is last).
_HINT_TAIL = 64 << 10


def _failure_hint(msg: str) -> str | None:
    """A fix for the failures a command gives when it cannot read its configuration or reach slurmctld."""
    msg = msg[-_HINT_TAIL:]
    if m := (_UNREADABLE[0].search(msg) or _UNREADABLE[1].search(msg)):
        return (f"Slurm cannot read {m[1][:200]} ({m[2][:80]}): let this user read it (slurm.conf is "
                "world-readable on a Slurm node), or point SLURM_CONF at a copy it can read")
    parse = _PARSE_ERROR.search(msg)
    if m := _UNKNOWN_KEY.search(msg):
        at = f" at {parse[1][:200]} line {parse[2]}" if parse else ""
        return (f"Slurm does not know the key {m[1][:80]}{at}: a misspelt key (fix it), or commands older "
                "than the slurmctld that reads this slurm.conf (run the cluster's Slurm release's commands, "
                "or use --backend rest with slurmrestd)")
    if (m := parse) or "Unable to process configuration file" in msg:
        where = f"{m[1][:200]} (line {m[2]})" if m else "SLURM_CONF's slurm.conf or a file it includes"
        return (f"Slurm cannot parse {where}: fix that line, or point SLURM_CONF at the cluster's slurm.conf "
                "(slurmctld is not asked; `scontrol show config` shows the same error)")
    if any(s in msg for s in _UNREACHABLE):
        return ("the Slurm commands cannot reach slurmctld: run this where `scontrol ping` answers, or point "
                "SLURM_CONF at the cluster's slurm.conf (or use --backend rest with slurmrestd)")
    return None


def _tail(msg: str, lines: int = 12) -> str:
    """The last lines of a command's error output (the fatal line is last)."""
    parts = msg.splitlines()
    return msg if len(parts) <= lines else "\n".join(["...", *parts[-lines:]])


class ChildTimeout(ExternalError):
    """A child process that did not end within its deadline (:func:`run_child` killed it)."""


class ChildNotStarted(ExternalError):
    """A child process that could not be started; ``reason``: the system's words (its strerror)."""

    reason = ""


#: how often :func:`run_child` looks at ``stop`` while it waits (s)
_STOP_POLL_S = 0.05


def run_child(argv: Sequence[str | os.PathLike[str]], timeout_s: float, *,
              stop: threading.Event | None = None, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv`` (no shell, stdin closed, stdout and stderr read as text, a byte that is not UTF-8 as
    U+FFFD) for at most ``timeout_s`` seconds: its CompletedProcess, whatever its exit status, or None when
    ``stop`` was set first. A child past its deadline or stopped is killed and reaped, never left running.
    :class:`ChildTimeout` when it did not end in time, :class:`ChildNotStarted` when it could not be
    started (a missing or non-executable program); both name the command."""
    words = [os.fspath(a) for a in argv]
    try:
        child = subprocess.Popen(words, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                 env=env, cwd=cwd)
    except OSError as exc:
        error = ChildNotStarted(f"cannot run `{shlex.join(words)}`: {exc.strerror or exc}",
                                hint="is the program installed, executable and on PATH?")
        error.reason = str(exc.strerror or exc)
        raise error from None
    deadline = time.monotonic() + timeout_s
    with child:  # closes the pipes and reaps the child, whatever happens here
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                try:
                    out, err = child.communicate(timeout=left if stop is None else min(left, _STOP_POLL_S))
                    return subprocess.CompletedProcess(words, child.returncode, out, err)
                except subprocess.TimeoutExpired:
                    if stop is not None and stop.is_set():
                        return None
                    if time.monotonic() >= deadline:
                        raise ChildTimeout(f"`{shlex.join(words)}` did not end within {timeout_s:g} s "
                                           "(killed)") from None
        finally:
            if child.poll() is None:
                child.kill()


class CliClient(SlurmClient):
    """Talks to Slurm through its commands. ``env`` (e.g. with ``SLURM_CONF``) goes to every call."""

    backend = "cli"

    def __init__(self, env: Mapping[str, str] | None = None, *, timeout: float = 30.0,
                 recorder: Callable[[list[str], str], None] | None = None) -> None:
        self.env = dict(env) if env is not None else dict(os.environ)
        self.timeout = timeout
        self.recorder = recorder  # benchmarks record every answer to replay it
        self._scontrol_nodes = False  # True once sinfo --json answered without a node list
        self._resv_text = False  # True once scontrol show reservation --json answered no JSON
        self._job_squeue = False  # True once scontrol had no --json for one job (22.05)
        self._jobs_json: str | None = None  # --json=v0.0.44 once an answer came from a newer data_parser
        self._no_older = False  # True once this Slurm refused that data_parser (it reads plain --json)
        self._said_exclusive = False  # the slurm.jobs_exclusive_unread event was emitted
        self._children: set[subprocess.Popen[str]] = set()  # the commands running (interrupt())
        self._interrupted = False
        self.decoded = decode.Decoders()  # its last node and job answers' records, decoded

    def interrupt(self) -> None:
        """Kill the commands running and refuse new ones (the agent's stop; safe from a signal handler or
        another thread): each fails at once with a SlurmError. :meth:`resume` undoes it."""
        self._interrupted = True
        for child in list(self._children):
            with contextlib.suppress(OSError):
                child.kill()

    def resume(self) -> None:
        """Commands run again after :meth:`interrupt` (the agent's last calls at stop)."""
        self._interrupted = False

    def _spawn(self, argv: list[str], stdin: str | None, cwd: str | None) -> subprocess.CompletedProcess[str]:
        # a job name or comment is the user's bytes, not always UTF-8: U+FFFD for a bad byte (as the rest
        # backend reads), never a UnicodeDecodeError that fails every cycle while that job is queued
        child = subprocess.Popen(argv, env=self.env, text=True, encoding="utf-8", errors="replace", cwd=cwd,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=None if stdin is None else subprocess.PIPE)
        self._children.add(child)
        try:
            if self._interrupted:  # interrupt() came between run()'s check and the add: it missed this child
                child.kill()
            out, err = child.communicate(stdin, timeout=self.timeout)
        except BaseException:  # the timeout, a signal's exception (KeyboardInterrupt): no child left running
            child.kill()
            child.communicate()
            raise
        finally:
            self._children.discard(child)
        return subprocess.CompletedProcess(argv, child.returncode, out, err)

    def run(self, argv: Sequence[str], stdin: str | None = None, *, cwd: str | None = None) -> str:
        """stdout of a Slurm command run with this client's environment; SlurmError naming the
        command when it is missing, times out or fails, or when SLURM_CONF names no readable file."""
        argv = [str(a) for a in argv]
        check_slurm_conf(self.env.get("SLURM_CONF"), f"{argv[0]} cannot read the cluster's configuration")
        stopping = SlurmError(f"`{shlex.join(argv)}` abandoned: the agent is stopping")
        if self._interrupted:
            raise stopping
        try:
            proc = self._spawn(argv, stdin, cwd)
        except FileNotFoundError:
            raise SlurmError(f"{argv[0]}: command not found",
                             hint="install Slurm's client commands (Debian: slurm-client)") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"`{shlex.join(argv)}` did not answer within {self.timeout:g} s",
                             hint="is slurmctld up? (scontrol ping)") from None
        if proc.returncode != 0 and self._interrupted:  # killed by interrupt()
            raise stopping
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            if "Invalid job id" in msg:
                raise NotFoundError(f"Slurm knows no job ({shlex.join(argv)}): {msg}", hint=UNKNOWN_JOB_HINT)
            raise SlurmError(f"`{shlex.join(argv)}` exited {proc.returncode}: {_tail(msg)}", hint=_failure_hint(msg))
        if self.recorder is not None:
            self.recorder(argv, proc.stdout)
        return proc.stdout

    def _json(self, argv: Sequence[str]) -> Any:
        return decode.load_answer(self.run(argv), f"`{' '.join(argv)}` did not answer JSON")

    def _jobs(self, command: Sequence[str], *tail: str) -> Any:
        """A job read (``squeue``, ``scontrol show job``) as JSON: ``--json``, except where an answer came
        from a data_parser newer than :data:`~fabric_hpc.slurm.decode.JOBS_PARSER` (26.05's v0.0.45 says no
        job is ``--exclusive``): then read again, and from then on, with ``--json=v0.0.44``. Every plain
        answer is checked (Slurm upgraded under a running agent). A Slurm without that parser
        (``unable to find plugin``; a release after 26.05 may drop it) is read with ``--json`` from then
        on, and a ``slurm.jobs_exclusive_unread`` event says once that ``--exclusive`` is not seen."""
        if self._jobs_json is not None:
            try:
                return self._json([*command, self._jobs_json, *tail])
            except SlurmError as exc:
                if "data_parser/v" not in exc.message:
                    raise
                self._jobs_json, self._no_older = None, True
        data = self._json([*command, "--json", *tail])
        found = decode.data_parser(data)
        if found is None or found <= decode.JOBS_PARSER:
            return data
        if not self._no_older:
            older = "--json=v%d.%d.%d" % decode.JOBS_PARSER
            try:
                again = self._json([*command, older, *tail])
            except SlurmError as exc:  # "load_plugins: unable to find plugin: data_parser/v0.0.44"
                if "data_parser/v" not in exc.message:
                    raise
                self._no_older = True
            else:
                self._jobs_json = older
                return again
        self._exclusive_unread(found)
        return data

    def _exclusive_unread(self, parser: tuple[int, int, int]) -> None:
        """The event, once per client, that jobs are read with a data_parser that hides ``--exclusive``."""
        if not self._said_exclusive:
            self._said_exclusive = True
            emit("slurm.jobs_exclusive_unread", backend="cli", data_parser="v%d.%d.%d" % parser,
                 hint="this Slurm has no data_parser/v%d.%d.%d: every job reads as shareable, so an "
                      "--exclusive gang may be placed on busy hosts" % decode.JOBS_PARSER)

    # -- reads ------------------------------------------------------------------------------
    @decode.gc_paused()
    def nodes(self) -> list[Node]:
        """``sinfo --json`` where it lists nodes (22.05); otherwise (23.02+: per-partition records)
        ``scontrol show nodes --json``, which later calls then ask directly."""
        if not self._scontrol_nodes:
            found = decode.nodes_answer(self._json(["sinfo", "--json"]), "sinfo --json", self.decoded.nodes)
            if found is not None:
                return found
            self._scontrol_nodes = True
        found = decode.nodes_answer(self._json(["scontrol", "show", "nodes", "--json"]),
                                    "scontrol show nodes --json", self.decoded.nodes)
        if found is None:
            raise SlurmError("scontrol show nodes --json answered without a 'nodes' list")
        return found

    @decode.gc_paused()
    def jobs(self) -> list[Job]:
        return queued(decode.jobs_answer(self._jobs(["squeue"]), "squeue --json", self.decoded.jobs))

    def reservations(self) -> resv.Read:
        """``scontrol show reservation --json`` (23.02+); its ``-o`` text (local times) where scontrol has no
        ``--json`` (Debian's 22.05: "unrecognized option") or answers no JSON; asked directly after that."""
        if not self._resv_text:
            try:
                out = self.run(["scontrol", "show", "reservation", "--json"])
            except SlurmError as exc:  # 22.05: "scontrol: unrecognized option '--json'"; other failures are
                if "option '--json'" not in exc.message:  # Slurm's (down, refused): the cycle's error
                    raise
                out = ""
            if out.lstrip().startswith("{"):
                what = "scontrol show reservation --json"
                return resv.json_answer(decode.load_answer(out, f"`{what}` did not answer JSON"), what)
            self._resv_text = True
        return resv.text_answer(self.run(["scontrol", "show", "reservation", "-o"]))

    def job(self, job_id: int) -> Job:
        """``scontrol show job --json ID`` (23.02+); ``squeue --json`` where scontrol has no ``--json``
        (Debian's 22.05: "unrecognized option", remembered). Never the ``-o`` text: a job name or comment
        with `` UserId=root(0) JobState=RUNNING`` in it would read as those fields there."""
        jid = int(job_id)
        if not self._job_squeue:
            argv = ["scontrol", "show", "job", "--json", str(jid)]
            try:
                data = self._jobs(argv[:3], str(jid))
            except SlurmError as exc:  # 22.05: "scontrol: unrecognized option '--json'"
                if "option '--json'" not in exc.message:
                    raise
                self._job_squeue = True
            else:
                found = [j for j in decode.jobs_answer(data, " ".join(argv)) if j.job_id == jid]
                if not found:
                    raise NotFoundError(f"Slurm knows no job {jid}", hint=UNKNOWN_JOB_HINT)
                return found[0]
        for j in decode.jobs_answer(self._jobs(["squeue"]), "squeue --json"):  # finished ones too
            if j.job_id == jid:
                return j
        raise NotFoundError(f"Slurm knows no job {jid}", hint=UNKNOWN_JOB_HINT)

    def node_lines(self) -> list[Node]:
        """``scontrol show node -d -o`` (the text fallback of :meth:`nodes`)."""
        out = self.run(["scontrol", "show", "node", "-d", "-o"])
        return [node_from_scontrol(line) for line in out.splitlines() if line.strip()]

    # -- actions ----------------------------------------------------------------------------
    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        with segment.submission(args):
            out = self.run(["sbatch", "--parsable", *args], script, cwd=cwd).strip()
        head = out.split(";")[0]
        if not head.isdigit():
            raise SlurmError(f"sbatch answered {out!r} instead of a job id")
        return int(head)

    def update(self, job_id: int, **fields: str) -> None:
        if not fields:
            return
        segment.refuse_update(job_id, fields)
        self.run(["scontrol", "update", f"JobId={int(job_id)}", *(f"{k}={v}" for k, v in fields.items())])

    def defer_many(self, job_ids: Sequence[int], seconds: int) -> None:
        """One ``scontrol update JobId=a,b,c StartTime=now+S`` per 200 jobs."""
        ids = [str(int(j)) for j in job_ids]
        for i in range(0, len(ids), 200):
            self.run(["scontrol", "update", f"JobId={','.join(ids[i:i + 200])}", f"StartTime=now+{int(seconds)}"])

    def hold(self, job_id: int) -> None:
        self.run(["scontrol", "hold", str(int(job_id))])

    def release(self, job_id: int) -> None:
        self.run(["scontrol", "release", str(int(job_id))])

    def requeue(self, job_id: int) -> None:
        # Incomplete: only if it still runs, in slurmctld (flag JOB_RUNNING, _job_requeue_op; 22.05 on)
        self.run(["scontrol", "requeue", "Incomplete", str(int(job_id))])

    def cancel(self, job_id: int) -> None:
        self.run(["scancel", str(int(job_id))])


def _gpu_type(text: str | None) -> str | None:
    return decode.gpu_type(text or "")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _int(kv: dict[str, str], key: str, what: str) -> int:
    value = kv.get(key, "0") or "0"
    if not _digits(value):
        raise SlurmError(f"{what}: {key}={value!r} is not a number")
    return int(value)


def job_from_scontrol(line: str) -> Job:
    """A job of ``scontrol show job -d -o`` (the detail part gives GPU indices per node)."""
    return decode.parsed("scontrol show job", _job_from_scontrol, line)


def node_from_scontrol(line: str) -> Node:
    """A node of ``scontrol show node -d -o``."""
    return decode.parsed("scontrol show node", _node_from_scontrol, line)


def _job_from_scontrol(line: str) -> Job:
    kv = job_key_values(line)  # refuses a line whose user text repeats a key
    if not _digits(kv.get("JobId", "")):
        raise SlurmError(f"scontrol answered a job line without a JobId: {line[:120]!r}")
    state, flags = parse_state(kv.get("JobState"))
    node_list = hosts(kv.get("NodeList")) if state != "PENDING" else ()
    per_node = job_node_gres(line)
    nodes = kv.get("NumNodes", "1").split("-")[0]
    when = resv.local_time
    return Job(job_id=int(kv["JobId"]), name=kv.get("JobName", ""), state=state, flags=flags,
               reason=normal_reason(kv.get("Reason")),  # the state_desc when Slurm set one
               comment="" if kv.get("Comment") in (None, "(null)") else kv["Comment"],
               user=kv.get("UserId", "").split("(")[0], partition=kv.get("Partition", ""),
               account=_set(kv.get("Account")), qos=_set(kv.get("QOS")), nodes=int(nodes) if _digits(nodes) else 1,
               gpus_per_node=gpus_requested(kv.get("TresPerNode")), gpu_type=_gpu_type(kv.get("TresPerNode")),
               gpus_per_job=gpus_requested(kv.get("TresPerJob")),
               cpus=int(c) if _digits(c := kv.get("NumCPUs", "0").split("-")[0]) else 0,
               node_list=node_list, req_nodes=hosts(kv.get("ReqNodeList")), exc_nodes=hosts(kv.get("ExcNodeList")),
               gpus={n: gpu_indices(g) for n, g in per_node.items() if gpu_count(g)},
               submit_time=when(kv.get("SubmitTime")) or 0.0, begin_time=when(kv.get("EligibleTime")),
               start_time=when(kv.get("StartTime")),
               priority=_int(kv, "Priority", f"job {kv['JobId']}") if "Priority" in kv else None,
               dependency=_set(kv.get("Dependency")), features=_set(kv.get("Features")),
               array_job_id=_int(kv, "ArrayJobId", f"job {kv['JobId']}"),
               het_job_id=_int(kv, "HetJobId", f"job {kv['JobId']}"), reservation=_set(kv.get("Reservation")),
               requeue=kv.get("Requeue", "1") != "0", time_limit_min=_limit(kv.get("TimeLimit"), kv["JobId"]),
               exclusive=_exclusive(kv),
               mem_per_node=_mib(kv.get("MinMemoryNode"), kv["JobId"]),
               mem_per_cpu=_mib(kv.get("MinMemoryCPU"), kv["JobId"]))


def _exclusive(kv: Mapping[str, str]) -> bool:
    """``--exclusive`` in ``scontrol show job``'s words: 26.05's ``Exclusive=NODE`` (its ``OverSubscribe=NO``
    is every job's that does not oversubscribe); before 26.05 ``OverSubscribe=NO`` (or ``Shared=NO``)."""
    if "Exclusive" in kv:
        return kv["Exclusive"] == "NODE"
    return kv.get("OverSubscribe", kv.get("Shared")) == "NO"


_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}


def _mib(text: str | None, job_id: str) -> int:
    """``MinMemoryNode=15500M`` / ``MinMemoryCPU=2G`` in MiB; 0 for none (absent, ``0``)."""
    if not text or text == "0":
        return 0
    unit = text[-1].upper() if text[-1].isalpha() else "M"
    digits = text[:-1] if text[-1].isalpha() else text
    if unit not in _MIB or not _digits(digits):
        raise SlurmError(f"job {job_id}: unreadable memory {text!r}")
    return int(int(digits) * _MIB[unit])


def _limit(text: str | None, job_id: str) -> int | None:
    """``TimeLimit=02:00:00`` in minutes; None for none (``UNLIMITED``, ``Partition_Limit``, absent)."""
    from fabric_hpc.slurm.rest_backend import minutes  # the rest backend imports this module

    if not text or not text[0].isdigit():
        return None
    try:
        return minutes(text)
    except FabricError:
        raise SlurmError(f"job {job_id}: unreadable TimeLimit={text!r}") from None


def _set(value: str | None) -> str:
    """A scontrol text value, '' for an unset one (``(null)``)."""
    return "" if value in (None, "(null)") else str(value)


def _node_from_scontrol(line: str) -> Node:
    kv = parse_key_values(line)
    if "NodeName" not in kv:
        raise SlurmError(f"scontrol answered a node line without NodeName: {line[:120]!r}")
    state, *flags = kv.get("State", "UNKNOWN").split("+")
    gres, used = kv.get("Gres"), kv.get("GresUsed")
    return Node(name=kv["NodeName"], state=state.lower().rstrip("*"), flags=tuple(flags),
                cpus=_int(kv, "CPUTot", f"node {kv['NodeName']}"), cpus_alloc=_int(kv, "CPUAlloc", f"node {kv['NodeName']}"),
                gpus=gpu_count(gres), gpu_type=_gpu_type(gres),
                gpus_used=gpu_indices(used) if gpu_count(used) else (),
                partitions=tuple(p for p in kv.get("Partitions", "").split(",") if p),
                features=tuple(f for f in kv.get("ActiveFeatures", "").split(",") if f and f != "(null)"),
                reservation=_set(kv.get("ReservationName")),
                mem=_int(kv, "RealMemory", f"node {kv['NodeName']}"),
                mem_alloc=_int(kv, "AllocMem", f"node {kv['NodeName']}"))
