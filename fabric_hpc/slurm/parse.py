"""Robust parsers for what Slurm prints: GRES strings, job states and reasons, ``scontrol -o`` lines.

Every parser fails closed: an answer it does not understand raises
:class:`~fabric_hpc.errors.ExternalError` naming the text it could not read, so an unexpected Slurm
answer never turns into a silent misplacement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fabric_hpc.errors import ExternalError
from fabric_hpc.hostlist import expand

#: Job states of Slurm 22.05 (``squeue``/``scontrol`` spelling), base states only.
JOB_STATES = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "COMPLETING", "CONFIGURING", "RESIZING",
    "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "SIGNALING",
    "STAGE_OUT", "RESV_DEL_HOLD",
})
ACTIVE_STATES = frozenset({"RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"})
#: The active states of a job that runs on (not ending: ``COMPLETING``, ``SIGNALING``, ``STAGE_OUT``): the
#: only ones in which the agent requeues a spot victim. Slurm requeues an ending or ended batch job too and
#: runs it again (job_mgr.c ``_job_requeue_op``: "we support requeue of done/exit/exiting jobs").
RUNNING_STATES = frozenset({"RUNNING", "SUSPENDED", "CONFIGURING"})
FINAL_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                          "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"})

#: Pending reasons in plain words (``fabric slurm why``). Unknown reasons are shown as they are.
REASONS = {
    "None": "no reason recorded",
    "Priority": "other jobs have higher priority and go first",
    "Resources": "the resources it asks for are busy",
    "BeginTime": "its start time has not come yet (fabric's deferral until the agent places it, its own "
                 "--begin, or Slurm's delay after a requeue)",
    "JobHeldUser": "it is held by its user (scontrol release to let it run)",
    "JobHeldAdmin": "it is held by an administrator",
    "Dependency": "it waits for another job it depends on",
    "DependencyNeverSatisfied": "its dependency can never be satisfied (a job it depends on ended the other "
                                "way: afterok needs its success, afternotok its failure), so it never starts "
                                "unless the dependency is changed",
    "ReqNodeNotAvail": "a node it requires cannot take it now (down, drained or reserved, or without the "
                       "memory it asks for free)",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows",
    "PartitionTimeLimit": "its time limit is longer than its partition allows",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionConfig": "it asks for what its partition is not configured to give",
    "Reservation": "it waits for its reservation (it may start only on the reservation's nodes, while it is "
                   "active)",
    "QOSGrpGRES": "its QOS has reached its GPU limit for the group",
    "AssocGrpGRES": "its account has reached its GPU limit",
    "QOSMaxWallDurationPerJobLimit": "its time limit is longer than its QOS allows",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "its constraints can never be satisfied",
    "InvalidQOS": "its QOS is invalid",
    "QOSMaxGRESPerUser": "its user has reached the GPU limit of the QOS",
    "Licenses": "it waits for licenses (--licenses) that other jobs hold",
    "BurstBufferResources": "it waits for burst buffer space",
    "BurstBufferStageIn": "it waits for its burst buffer to be staged in",
    "NvidiaImexChannels": "it waits for a free NVIDIA IMEX channel",
    "MpiPortsBusy": "it waits for MPI ports (MpiParams=ports) that other jobs hold",
    "Cleaning": "Slurm is still cleaning up its previous run (after a requeue)",
    "Constraints": "its constraints (--constraint) cannot be satisfied now",
    "JobHoldMaxRequeue": "it was requeued and held after too many failed launches (scontrol release once "
                         "the cause is fixed)",
    "ReservationDeleted": "the reservation it was submitted to was deleted",
    "ReservationInvalid": "the reservation it was submitted to is invalid",
    "TimeLimit": "it reached a time limit (its own, its reservation's end, or its QOS/association's)",
    "AccountNotAllowed": "its user or account may not use this partition",
    "QOSNotAllowed": "its QOS may not use this partition",
    "SystemFailure": "Slurm could not load its batch script, environment or job components",
    "RaisedSignal": "it ended by a signal",
}

_GRES_ITEM = re.compile(
    r"^(?P<name>[A-Za-z][\w.-]*)(?::(?P<type>[A-Za-z][\w.-]*))?(?::(?P<count>\d+))?"
    r"(?:\((?P<extra>[^()]*)\))?$")
_STATE = re.compile(r"^[A-Z_]+$")


@dataclass(frozen=True)
class Gres:
    """One GRES item: ``gpu:h100:8(S:0-1)`` -> name gpu, type h100, count 8, sockets (0, 1)."""

    name: str
    type: str | None
    count: int
    indices: tuple[int, ...] | None = None  # IDX:… (allocated devices)
    sockets: tuple[int, ...] | None = None  # S:… (socket affinity)


def _int_ranges(text: str, what: str) -> tuple[int, ...]:
    """``0-2,5`` -> (0, 1, 2, 5); ``N/A`` -> ()."""
    if text in ("N/A", ""):
        return ()
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ExternalError(f"Slurm answered a malformed index range {text!r} in {what}")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return tuple(out)


def _split_items(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_gres(text: str | None) -> list[Gres]:
    """Parse a GRES string: ``gpu:8(IDX:0-7)``, ``gpu:h100:8(S:0-1)``, ``gres:gpu:3``, ``(null)``.

    Several items are separated by commas; a missing count means 1. Raises ExternalError on any
    item it cannot read (never guesses).
    """
    if text is None or text.strip() in ("", "(null)", "N/A"):
        return []
    items = []
    for raw in _split_items(text.strip()):
        item = raw[5:] if raw.startswith("gres:") or raw.startswith("gres/") else raw
        item = item.replace("/", ":", 1) if item.startswith("gpu/") else item
        m = _GRES_ITEM.match(item)
        if not m:
            raise ExternalError(f"Slurm answered a GRES string fabric cannot read: {raw!r} (in {text!r})",
                                hint="expected name[:type][:count][(IDX:0-7|S:0-1|CNT:1)]")
        gtype, count = m["type"], m["count"]
        if gtype is not None and gtype.isdigit() and count is None:  # gpu:8 parsed as type "8"? (regex forbids)
            gtype, count = None, gtype
        indices = sockets = None
        for field in (m["extra"] or "").split(")(") if m["extra"] else []:
            key, _, value = field.partition(":")
            if key == "IDX":
                indices = _int_ranges(value, raw)
            elif key == "S":
                sockets = _int_ranges(value, raw)
            elif key == "CNT" and value.isdigit():  # a count-only GRES: nvme(CNT:1)
                count = value if count is None else count
            elif m["name"] == "gpu":  # other GRES' details do not matter to fabric
                raise ExternalError(f"Slurm answered an unknown GRES detail {key!r} in {raw!r}")
        items.append(Gres(m["name"], gtype, int(count) if count is not None else 1, indices, sockets))
    return items


def gpu_count(text: str | None) -> int:
    """GPUs in a GRES / TRES-per-node string (0 when it names no GPU)."""
    return sum(g.count for g in parse_gres(text) if g.name == "gpu")


def gpus_requested(text: str | None) -> int:
    """GPUs a job asks for in a TRES request (``TresPerNode``, ``TresPerJob``): an item of a GPU type given
    again replaces the earlier one, as in Slurm (gres.c ``gres_job_state_validate`` keeps one record per
    name and type, the last count): ``gres/gpu:8,gres/gpu:8`` (``--gres=gpu:8 --gpus-per-node=8``) is 8,
    ``gres/gpu:4,gres/gpu:2`` is 2; items of different types add up (``gpu:a100:2,gpu:h100:2``: 4)."""
    last = {g.type: g.count for g in parse_gres(text) if g.name == "gpu"}
    return sum(last.values())


def gpu_types(items: list[Gres]) -> str | None:
    """The GPU type(s) GRES items name: ``a100``; several sorted and joined by commas (``a100,h100``:
    a host that has both, or a job that asks for both); None when no GPU item names a type."""
    types = sorted({g.type for g in items if g.name == "gpu" and g.type})
    return ",".join(types) if types else None


def gpu_indices(text: str | None) -> tuple[int, ...]:
    """Allocated GPU indices of one node (``gpu:h100:3(IDX:0-2)`` -> (0, 1, 2))."""
    out: list[int] = []
    for g in parse_gres(text):
        if g.name != "gpu":
            continue
        if g.indices is None:
            raise ExternalError(f"Slurm gave no GPU indices (IDX:…) in {text!r}",
                                hint="query with details (scontrol -d / squeue --json)")
        if g.count and len(g.indices) != g.count:
            raise ExternalError(f"GRES {text!r}: {g.count} GPUs but {len(g.indices)} indices")
        out.extend(g.indices)
    return tuple(sorted(out))


#: Flags that slurmctld sets only on a pending job, and that ``job_state_string()`` (Slurm 22.05, 23.02:
#: ``squeue``/``scontrol`` text and data_parser v0.0.39's ``job_state``) prints alone, in place of PENDING:
#: ``scontrol requeuehold State=SpecialExit`` (SPECIAL_EXIT), too many failed launches (REQUEUE_HOLD), a
#: deleted or invalid reservation (RESV_DEL_HOLD), a requeue under way (REQUEUED); 23.11+ answer
#: ``["PENDING", "SPECIAL_EXIT"]`` (src/slurmctld/job_mgr.c, reservation.c of slurm-23-02-8-1)
HELD_PENDING_WORDS = frozenset({"SPECIAL_EXIT", "REQUEUE_HOLD", "RESV_DEL_HOLD", "REQUEUED"})
#: Flags Slurm's ``job_state_string`` prints instead of the base state (``scontrol show job`` text, pyslurm's
#: ``Job.state``; the JSON answers list the base first), with the base they go with: a job stopped by
#: ``scancel --signal=STOP`` or being resized runs on and holds its nodes; an expedited requeue is pending
#: and requeued (job_mgr.c sets ``JOB_EXPEDITING`` with ``JOB_REQUEUE``; the string names the first only).
FLAG_WORDS = {"STOPPED": ("RUNNING",), "RESIZING": ("RUNNING",), "EXPEDITING": ("PENDING", "REQUEUED")}


def parse_state(text: str | list[str] | None) -> tuple[str, tuple[str, ...]]:
    """``RUNNING`` / ``PENDING+REQUEUED`` / ``["PENDING"]`` -> (base state, flags). Unknown: ExternalError.
    ``SPECIAL_EXIT`` alone (22.05, 23.02: :data:`HELD_PENDING_WORDS`) is ``PENDING`` + ``SPECIAL_EXIT``.

    A job whose teardown is under way is ``COMPLETING`` whatever its base state, as Slurm's own
    ``scontrol show job`` text says: a requeued job is ``PENDING`` + ``COMPLETING`` in the JSON
    answers until its epilog ends, and it still holds its nodes (and its old ``ReqNodeList`` and
    begin time: it must not look like an eligible pending job then)."""
    parts = list(text) if isinstance(text, list) else str(text or "").split("+")
    parts = [p.strip().upper() for p in parts if p and p.strip()]
    if not parts or not all(_STATE.match(p) for p in parts):
        raise ExternalError(f"Slurm answered an unreadable job state {text!r}")
    base = parts[0]
    if base in HELD_PENDING_WORDS:  # 22.05/23.02 answer the flag alone: a pending job with that flag
        base, parts = "PENDING", ["PENDING", *parts]
    elif base in FLAG_WORDS:  # a flag printed in place of the base state
        base, *implied = FLAG_WORDS[base]
        parts = [base, *implied, *parts]
    if base not in JOB_STATES:
        raise ExternalError(f"Slurm answered an unknown job state {base!r}",
                            hint=f"known states: {', '.join(sorted(JOB_STATES))}")
    flags = tuple(parts[1:])
    if "COMPLETING" in flags and base != "COMPLETING":
        return "COMPLETING", (base, *(f for f in flags if f != "COMPLETING"))
    return base, flags


#: Texts slurmctld sets as a job's ``state_desc`` next to its reason, by that reason's enum name: scontrol's
#: ``Reason=`` shows the text (spaces as ``_``) and pyslurm's ``state_reason`` too, where slurmrestd's
#: ``state_reason`` is the enum name (src/slurmctld/job_mgr.c: a ``scontrol requeuehold`` sets both).
REASON_DESCRIPTIONS = {"job requeued in held state": "JobHeldUser"}
#: every other ``state_desc`` slurmctld 25.11 sets, by pattern (matched on the text lower-cased with ``_`` as
#: spaces, as :func:`normal_reason` compares it), with the reason set next to it (src/slurmctld: the file;
#: the names are src/common/job_state_reason.c's); tests/slurm/test_reason_descriptions.py lists the texts
REASON_PATTERNS = tuple((re.compile(pattern), name) for pattern, name in (
    (r"nodes required for job are down, drained(, rebooting)? or reserved for jobs in higher priority "
     r"partitions", "Resources"),  # job_scheduler.c (WAIT_RESOURCES)
    (r"job requeued in special exit state", "JobHeldUser"),  # job_mgr.c
    (r"launch failure limit exceeded requeued held", "JobHoldMaxRequeue"),  # job_mgr.c
    (r"reservation \S+ was deleted", "ReservationDeleted"),  # reservation.c
    (r"reservation \S+ is invalid", "ReservationInvalid"),  # reservation.c
    (r"reservation \S+, which this job was running under, has ended", "TimeLimit"),  # job_mgr.c
    (r"uid \d+ not in group permitted to use this partition .*", "AccountNotAllowed"),  # node_scheduler.c
    (r"job's qos not (known|permitted).* use this partition .*", "QOSNotAllowed"),  # partition_mgr.c
    (r"license request .* is no longer valid, holding job", "JobHeldAdmin"),  # job_mgr.c (WAIT_HELD)
    (r"unable to load job (batch script|environment)", "SystemFailure"),  # job_scheduler.c
    (r"invalid het job id set|invalid hetjob component|incomplete hetjob", "SystemFailure"),  # read_config.c
    (r"raisedsignal:\d+\(.*\)", "RaisedSignal"),  # job_mgr.c (FAIL_SIGNAL)
    (r"job is at or exceeds (qos|association) .*", "TimeLimit"),  # acct_policy.c (FAIL_TIMEOUT)
))
_REASON_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")


def normal_reason(text: str | None) -> str:
    """A pending reason as Slurm's enum name, whichever backend read it: ``ReqNodeNotAvail,
    UnavailableNodes:n7`` (pyslurm) and ``ReqNodeNotAvail,_UnavailableNodes:n7`` -> ``ReqNodeNotAvail``;
    ``job_requeued_in_held_state`` (scontrol) and ``job requeued in held state`` (pyslurm) ->
    ``JobHeldUser`` (:data:`REASON_DESCRIPTIONS`); empty -> ``None``; any other text as it is."""
    reason = (text or "").strip()
    if not reason or reason == "(null)":
        return "None"
    described = " ".join(reason.replace("_", " ").split()).lower()
    if described in REASON_DESCRIPTIONS:
        return REASON_DESCRIPTIONS[described]
    for pattern, name in REASON_PATTERNS:
        if pattern.fullmatch(described):
            return name
    head = reason.split(",", 1)[0].strip()
    return head if "," in reason and _REASON_NAME.fullmatch(head) else reason


def reason_words(reason: str | None) -> str:
    """A pending reason in plain words; an unknown one as it is."""
    reason = (reason or "None").strip()
    return REASONS.get(reason, reason)


def hosts(text: str | None) -> tuple[str, ...]:
    """A node list (``n[1-3,7]``) as names; ``(null)``/empty -> ()."""
    if text is None or text.strip() in ("", "(null)", "None", "N/A"):
        return ()
    try:
        return tuple(expand(text.strip()))
    except Exception as exc:  # ConfigError from hostlist: Slurm's answer, so ExternalError
        raise ExternalError(f"Slurm answered a malformed node list {text!r}: {exc}") from None


_KV = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


def parse_key_values(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` line as a dict (values may contain spaces up to the next key).

    Repeated keys (the per-node ``Nodes= … GRES=`` details of ``-d``) keep their first value;
    use :func:`job_node_gres` for those.
    """
    out: dict[str, str] = {}
    matches = list(_KV.finditer(line))
    if not matches:
        raise ExternalError(f"scontrol answered a line without key=value pairs: {line[:120]!r}")
    for m, nxt in zip(matches, matches[1:] + [None], strict=True):
        value = line[m.end():nxt.start() if nxt else len(line)].strip()
        out.setdefault(m.group(1), value)
    return out


_DETAIL = re.compile(r"\bNodes=(\S+) CPU_IDs=\S* Mem=\S* GRES=(\S*)")
_DETAIL_KEYS = frozenset({"Nodes", "CPU_IDs", "Mem", "GRES"})


def job_key_values(line: str) -> dict[str, str]:
    """:func:`parse_key_values` of one ``scontrol show job -d -o`` line, failing closed: Slurm prints each
    key once (but the per-node ``Nodes= CPU_IDs= Mem= GRES=`` details), so a key that comes twice is user
    text (``JobName``, ``Comment``, ``WorkDir``, ``StdOut``, ``SubmitLine``) that holds `` Key=value``: such
    a line cannot be read safely (which ``UserId=``, which ``JobState=`` is Slurm's?) and raises
    ExternalError."""
    seen: set[str] = set()
    for m in _KV.finditer(line):
        key = m.group(1)
        if key in seen and key not in _DETAIL_KEYS:
            raise ExternalError(f"scontrol's one-line job text is ambiguous: {key}= comes twice (a job name, "
                                f"comment or path holds ' {key}=…'): {line[:120]!r}",
                                hint="read the job as JSON (scontrol show job --json, squeue --json)")
        seen.add(key)
    return parse_key_values(line)


def _detail_span(line: str) -> tuple[int, int]:
    """Where ``scontrol show job -d`` prints the per-node details: after ``JOB_GRES=`` (which follows
    ``CoreSpec=``/``ThreadSpec=``) and before ``MinCPUsNode=`` (src/scontrol/info_job.c). Details elsewhere
    are user text. (0, 0) when the line has none."""
    keys = {m.group(1): m.start() for m in _KV.finditer(line)}
    start = keys.get("JOB_GRES")
    spec = keys.get("CoreSpec", keys.get("ThreadSpec", -1))
    if start is None or spec > start:
        return 0, 0
    end = keys.get("MinCPUsNode", len(line))
    return (start, end) if end > start else (0, 0)


def job_node_gres(line: str) -> dict[str, str]:
    """Node -> allocated GRES from the details of ``scontrol show job -d -o`` (only where Slurm prints them:
    a ``Nodes=… GRES=…`` in a job name or comment is not read)."""
    out: dict[str, str] = {}
    start, end = _detail_span(line)
    for m in _DETAIL.finditer(line, start, end):
        for node in hosts(m.group(1)):
            out[node] = m.group(2)
    return out
