"""Readers for a site's own Slurm job history: ``sacct --parsable2`` output and ``jobcomp/filetxt`` logs.

So an admin can ask "how would fabric have scheduled my cluster's last month?"::

    TZ=UTC sacct --parsable2 -a -X -S 2026-10-01 -E 2026-11-01 \\
          --format=JobID,Submit,Start,End,Timelimit,NNodes,AllocTRES,Account,User,Partition,QOS,State > month.txt
    fabric sim run --trace sacct:month.txt --topology topology.yaml --policy fabric --out out/

sacct prints times in the local time zone without an offset, and these readers read them as UTC:
``TZ=UTC`` keeps an export across a daylight-saving change in order (otherwise an End read an hour
before its Start is an error naming the row). A time with an offset (``...+02:00``) is converted.

Mapping (both readers):

* submit = ``Submit``/``SubmitTime``; duration = ``End − Start`` (jobs that never started or are
  still running are skipped and counted; Start before Submit or End before Start by more than
  :data:`CLOCK_SKEW_S` is a ConfigError); walltime = ``Timelimit``/``TimeLimit`` (``UNLIMITED`` or
  ``Partition_Limit``: ``unlimited_factor`` × duration);
* GPUs: ``gres/gpu=N`` (or ``gres/gpu:<type>=N``) in ``AllocTRES``/``Tres`` when present, else
  ``NNodes``/``NodeCnt`` × ``gpus_per_node`` (whole nodes: without slurmdbd and
  ``AccountingStorageTRES=gres/gpu`` Slurm 22.05 does not log GPU counts in jobcomp);
  ``gpus_per_node`` defaults to ``gpus_per_host`` (``fabric sim run``: the fabric's largest host, or
  ``--gpus-per-node``). A sacct row whose ``AllocTRES``/``ReqTRES`` lists TRES but no ``gres/gpu`` is
  a CPU-only job and is skipped (``NO_GPU_TRES``); NNodes × ``gpus_per_node`` is used only for a
  row with no TRES at all (no such column, or empty). A jobcomp ``Tres`` without ``gres/gpu`` is
  the 22.05 case above, so there it means whole nodes;
* tier: the first of ``QOS``, ``Partition`` found in ``tier_map`` (default: high→high,
  spot/preempt/low/scavenger→spot), else ``normal``; account = ``Account`` (or ``default``).
* steps (``123.batch``, ``123.0``) are skipped; array and het job ids (``12_3``, ``7+1``) are kept as ids;
* a job listed twice in sacct output is refused (sacct without ``--duplicates``); a jobcomp log has one
  record per requeue and one at the end: they are one job (``_requeues_merged``: the last record,
  the first submit time); a job whose (last) record is ``REQUEUED``, ``REQUEUE_HOLD`` or
  ``REQUEUE_FED`` is skipped and counted (it is pending again: its final run is not in the log).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.sim.rows import (MAX_TRACE_SECONDS, NO_GPU_TRES, NO_SUBMIT, NOT_FINISHED, NOT_GPU, Keep,
                                checked_id, lines)
from fabric_hpc.sim.traces import MAX_JOB_GPUS, Trace, _built, _host_size, _open, gang_request

DEFAULT_TIER_MAP = {"high": "high", "urgent": "high", "spot": "spot", "preempt": "spot", "preemptible": "spot",
                    "low": "spot", "scavenger": "spot"}
_UNSET = {"", "Unknown", "unknown", "None", "N/A"}  # jobcomp/filetxt writes "unknown" for no submit time
#: Job states of a jobcomp record after which Slurm runs the job again (it is pending when the log ends).
REQUEUE_STATES = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
#: Seconds a Start may precede its Submit, or an End its Start, and be read as the same instant:
#: slurmctld stamps all three from one clock, but a log merged from a backup controller (another
#: host) can be a few seconds apart. Beyond this a row is an error, never a guess.
CLOCK_SKEW_S = 60.0


def parse_time(text: str) -> float | None:
    """Slurm timestamp ``2026-11-23T00:19:10`` → seconds since the epoch (UTC); None for Unknown."""
    if text in _UNSET:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
    except ValueError:
        raise ConfigError(f"bad Slurm timestamp {text!r}", hint="expected YYYY-MM-DDTHH:MM:SS") from None


def parse_duration(text: str) -> float | None:
    """Slurm time limit / elapsed (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) → seconds;
    None for ``UNLIMITED``/``Partition_Limit``/empty."""
    text = text.strip()
    if text in _UNSET or text.upper() in ("UNLIMITED", "PARTITION_LIMIT", "INFINITE"):
        return None
    m = re.fullmatch(r"(?:([0-9]{1,9})-)?([0-9]{1,12})(?::([0-9]{1,12}))?(?::([0-9]{1,12}))?", text)
    if not m:
        raise ConfigError(f"bad Slurm duration {text!r}", hint="expected [D-]HH:MM:SS or minutes")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if c is not None:
        return a * 3600 + b * 60 + c
    if b is not None:
        return a * 60 + b
    return a * 60.0  # bare number: minutes


def whole_number(text: str, what: str) -> int:
    """A count written in a Slurm log: ASCII digits only (``int`` would take ``'٣'`` and choke on
    ``'²'``, which ``str.isdigit`` accepts), at most 9 of them."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ConfigError(f"{what} {text[:40]!r} is not a whole number",
                          hint="a count is written in the digits 0-9 (at most 9 of them); fix or drop "
                               "that line")
    return int(text)


def tres_gpus(tres: str) -> int | None:
    """GPUs in a TRES string: ``gres/gpu=N``, else the sum of ``gres/gpu:<type>=N``; None if absent.
    A GPU count that is not a whole number is a ConfigError (not a silent fallback to whole nodes)."""
    plain, typed = None, []
    for part in tres.split(","):
        key, _, val = part.strip().partition("=")
        if key == "gres/gpu":
            plain = whole_number(val, "gres/gpu")
        elif key.startswith("gres/gpu:"):
            typed.append(whole_number(val, key[:60]))
    return plain if plain is not None else (sum(typed) if typed else None)


def _tier(tier_map: dict[str, str], *names: str) -> str:
    for name in names:
        if name and name.lower() in tier_map:
            return tier_map[name.lower()]
    return "normal"


def _job(fields: dict[str, str], where: str, *, gpus_per_node: int, gpus_per_host: int,
         unlimited_factor: float, tier_map: dict[str, str], tres_lists_gpus: bool) -> Job | str:
    """The Job of one record, or the reason (sim.rows) it is skipped."""
    get = fields.get
    submit, start, end = (parse_time(get(k, "") or "") for k in ("submit", "start", "end"))
    if start is None or end is None or get("state") in REQUEUE_STATES:
        return NOT_FINISHED  # never started, still running, or requeued and not run again within the log
    for name, t in (("Submit", submit), ("Start", start), ("End", end)):
        if t is not None and not 0 <= t <= MAX_TRACE_SECONDS:  # seconds since 1970, as the other traces
            raise ConfigError(f"{name} {get(name.lower())!r} is outside 1970..2286 (0..{MAX_TRACE_SECONDS:.0e} s)")
    if submit is None:
        return NO_SUBMIT  # jobcomp/filetxt writes SubmitTime=unknown when slurmctld had none
    start, end = _in_order(get, submit, start, end)
    dur = end - start
    limit = parse_duration(get("timelimit", "") or "")
    if limit is not None and limit > MAX_TRACE_SECONDS:
        raise ConfigError(f"Timelimit {get('timelimit')!r} is longer than {MAX_TRACE_SECONDS:.0e} s",
                          hint="write UNLIMITED for no limit")
    nodes = whole_number(get("nnodes") or "0", "node count")
    tres = (get("tres", "") or "").strip()
    gpus = tres_gpus(tres)
    source = "its TRES"
    if gpus is None and tres and tres_lists_gpus:
        return NO_GPU_TRES  # sacct: TRES without gres/gpu is a CPU-only job
    if gpus is None:
        gpus, source = nodes * gpus_per_node, f"{nodes:,} node(s) × {gpus_per_node}"
    if gpus <= 0:
        return NOT_GPU
    if gpus > MAX_JOB_GPUS:
        raise ConfigError(f"the job asks {gpus:,} GPUs (from {source}), more than the {MAX_JOB_GPUS:,} a "
                          "trace job may hold", hint="fix or drop that row")
    wall = max(limit if limit is not None else dur * unlimited_factor, dur, 1.0)
    req = gang_request(gpus, gpus_per_host)
    if 1 < nodes <= 100_000 and gpus % nodes == 0 and gpus // nodes <= gpus_per_host:
        from fabric_hpc.placement.request import Request

        req = Request(nodes=nodes, gpus_per_node=gpus // nodes)
    return Job(id=f"slurm{get('jobid')}", request=req, submit=submit, walltime=wall, duration=dur,
               account=get("account") or "default", user=(get("user") or "user").split("(")[0],
               tier=_tier(tier_map, get("qos") or "", get("partition") or ""),
               meta={"source": where, "state": get("state") or "",
                     **({"requeues": int(get("requeues") or 0)} if get("requeues") else {})})


def _in_order(get: Any, submit: float, start: float, end: float) -> tuple[float, float]:
    """(start, end) of a record whose Submit ≤ Start ≤ End, up to CLOCK_SKEW_S (then clamped);
    a larger step back is a ConfigError (a run cannot start before it was asked for or end before
    it started: the row is damaged or its clock jumped)."""
    steps = (((submit, "Submit", "submit"), (start, "Start", "start"), "start", "submitted"),
             ((start, "Start", "start"), (end, "End", "end"), "end", "started"))
    for (a, a_name, a_key), (b, b_name, b_key), verb, done in steps:
        if b < a - CLOCK_SKEW_S:
            raise ConfigError(f"{b_name} {get(b_key)} is {a - b:,.0f} s before {a_name} {get(a_key)}",
                              hint=f"a job cannot {verb} before it was {done}. Slurm writes local time "
                                   "without an offset: across a daylight-saving change (clocks back 1 h) "
                                   "times step back, so export in UTC (TZ=UTC sacct ...; for jobcomp, "
                                   "slurmctld run with TZ=UTC); otherwise fix or drop that row (up to "
                                   f"{CLOCK_SKEW_S:.0f} s of clock skew is read as the same instant)")
    start = max(start, submit)
    return start, max(end, start)


_SACCT_KEYS = {"jobid": "jobid", "submit": "submit", "start": "start", "end": "end", "timelimit": "timelimit",
               "nnodes": "nnodes", "alloctres": "tres", "reqtres": "reqtres", "account": "account", "user": "user",
               "partition": "partition", "qos": "qos", "state": "state"}


def read_sacct(path: str | os.PathLike[str], *, gpus_per_node: int | None = None, gpus_per_host: int = 8,
               unlimited_factor: float = 2.0, tier_map: dict[str, str] | None = None,
               limit: int | None = None) -> Trace:
    """``sacct --parsable2`` output (a header line, ``|``-separated; see the module doc for the fields);
    ``limit``: only the N earliest jobs (every row is still checked); ``gpus_per_node``: GPUs of each
    node of a row with no TRES at all (default ``gpus_per_host``)."""
    p = _open(path)
    return _trace(p, _sacct_rows(p), f"sacct:{p.name}", limit, **_sizes(gpus_per_node, gpus_per_host),
                  unlimited_factor=unlimited_factor, tier_map=tier_map or DEFAULT_TIER_MAP,
                  tres_lists_gpus=True)


def _sizes(gpus_per_node: int | None, gpus_per_host: int) -> dict[str, int]:
    """``gpus_per_node`` (default: ``gpus_per_host``) and ``gpus_per_host``, checked."""
    gpus_per_host = _host_size(gpus_per_host)
    if gpus_per_node is None:
        return {"gpus_per_node": gpus_per_host, "gpus_per_host": gpus_per_host}
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or not (
            1 <= gpus_per_node <= 1024):
        raise ConfigError(f"gpus_per_node={gpus_per_node!r} must be a whole number in 1..1024",
                          hint="give the GPUs of each node of the cluster the log is from (--gpus-per-node), "
                               "or leave it out for the fabric's GPUs per host")
    return {"gpus_per_node": gpus_per_node, "gpus_per_host": gpus_per_host}


def _sacct_rows(p: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, fields) of each job line (job steps left out)."""
    rows = ((n, ln) for n, ln in enumerate(lines(p), start=1) if ln.strip())
    _, first = next(rows, (0, ""))
    if "|" not in first or "jobid" not in first.lower():
        raise ConfigError(f"{p}: not sacct --parsable2 output (no JobID|... header line)",
                          hint="run sacct with --parsable2 and without --noheader")
    header = [_SACCT_KEYS.get(h.strip().lower(), h.strip().lower()) for h in first.split("|")]
    missing = {"jobid", "submit", "start", "end"} - set(header)
    if missing:
        raise ConfigError(f"{p}: sacct output lacks field(s) {sorted(missing)}",
                          hint="--format=JobID,Submit,Start,End,Timelimit,NNodes,AllocTRES,Account,User,Partition,QOS")
    for n, line in rows:
        vals = line.split("|")
        if len(vals) != len(header):
            raise ConfigError(f"{p}:{n}: {len(vals)} fields, the header has {len(header)}",
                              hint="fix or drop that line (a '|' inside a field, e.g. a job name, shifts the "
                                   "fields: leave JobName out of --format)")
        fields = dict(zip(header, vals, strict=True))
        if "." in fields["jobid"]:
            continue  # a job step
        if not fields.get("tres") and fields.get("reqtres"):
            fields["tres"] = fields["reqtres"]
        yield n, fields


_JOBCOMP = {"jobid": "jobid", "submittime": "submit", "starttime": "start", "endtime": "end",
            "timelimit": "timelimit", "nodecnt": "nnodes", "tres": "tres", "account": "account", "userid": "user",
            "partition": "partition", "qos": "qos", "jobstate": "state"}


#: Fields every jobcomp/filetxt record has (slurm's jobcomp_filetxt.c writes them all on one line).
_JOBCOMP_NEEDED = {"state": "JobState=", "start": "StartTime=", "end": "EndTime=", "nnodes": "NodeCnt=",
                   "submit": "SubmitTime="}


def read_jobcomp(path: str | os.PathLike[str], *, gpus_per_node: int | None = None, gpus_per_host: int = 8,
                 unlimited_factor: float = 2.0, tier_map: dict[str, str] | None = None,
                 limit: int | None = None) -> Trace:
    """Slurm's ``jobcomp/filetxt`` log: one ``Key=Value Key=Value ...`` line per finished job, and one
    more per requeue (see :func:`_requeues_merged`: the records of one JobId are one job)."""
    p = _open(path)
    return _trace(p, _requeues_merged(p, _jobcomp_rows(p)), f"jobcomp:{p.name}", limit,
                  **_sizes(gpus_per_node, gpus_per_host), unlimited_factor=unlimited_factor,
                  tier_map=tier_map or DEFAULT_TIER_MAP, tres_lists_gpus=False)


def _jobcomp_rows(p: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for n, line in enumerate(lines(p), start=1):
        if not line.strip():
            continue
        fields: dict[str, str] = {}
        for tok in line.split():
            key, sep, val = tok.partition("=")
            k = _JOBCOMP.get(key.lower()) if sep else None
            if k:
                fields[k] = val
        if "jobid" not in fields:
            raise ConfigError(f"{p}:{n}: not a jobcomp/filetxt line (no JobId=)")
        lacking = [name for key, name in _JOBCOMP_NEEDED.items() if key not in fields]
        if lacking:
            raise ConfigError(f"{p}:{n}: the jobcomp record of JobId={fields['jobid'][:40]} has no "
                              f"{', '.join(lacking)} (a truncated line?)",
                              hint="fix or drop that line; jobcomp/filetxt writes JobState, StartTime, "
                                   "EndTime, NodeCnt and SubmitTime in every record")
        yield n, fields


Rows = Iterator[tuple[int, dict[str, str]]]


def _requeues_merged(p: Path, rows: Rows) -> Rows:
    """One row per JobId. Slurm writes a jobcomp record at every requeue (``job_completion_logger``
    from the requeue paths of slurmctld/job_mgr.c: state REQUEUED, PREEMPTED, NODE_FAIL, ...) and
    one when the job ends, so a job run k times has k records, in log order. The job is its last
    record (its final run: start, end, state, TRES, limit) with the *first* record's submit time
    (when the user asked; Slurm resets the submit time at each requeue), and ``requeues`` = k - 1.
    Records of one id that cannot be successive runs of one job are refused: the same record twice
    (a log given twice), or a run that starts before the previous record ended or a submit time
    that goes back (a job id reused after a state reset, logs concatenated out of order)."""
    first: dict[str, tuple[int, str]] = {}  # id -> (first line, first known submit time)
    # id -> (line, record, its times, runs so far)
    last: dict[str, tuple[int, dict[str, str], dict[str, float | None], int]] = {}
    for n, fields in rows:
        times = {k: _time_at(p, n, fields, k) for k in ("submit", "start", "end")}
        jid = fields["jobid"]
        line, submit = first.get(jid, (n, ""))
        if not submit and times["submit"] is not None:
            submit = fields["submit"]
        first[jid] = (line, submit)
        runs = 0
        if jid in last:
            prev_n, prev, prev_t, runs = last[jid]
            _successive(p, n, jid, prev_n, prev, prev_t, fields, times)
        last[jid] = (n, fields, times, runs + 1)
    for jid, (_, submit) in sorted(first.items(), key=lambda kv: kv[1][0]):
        n, fields, _, runs = last[jid]
        yield n, {**fields, "submit": submit or fields.get("submit", ""),
                  **({"requeues": str(runs - 1)} if runs > 1 else {})}


def _time_at(p: Path, n: int, fields: dict[str, str], key: str) -> float | None:
    try:
        return parse_time(fields.get(key, "") or "")
    except ConfigError as exc:
        raise ConfigError(f"{p}:{n}: {exc.message}", hint=exc.hint) from None


def _successive(p: Path, n: int, jid: str, prev_n: int, prev: dict[str, str], prev_t: dict[str, float | None],
                fields: dict[str, str], times: dict[str, float | None]) -> None:
    """Refuse a record of ``jid`` at line ``n`` that is not a later run of the job recorded at ``prev_n``."""
    hint = ("keep each record once (concatenate rotated jobcomp logs once each, oldest first); a job id "
            "reused after a slurmctld state reset is another job: give its log on its own")
    if fields == prev:
        raise ConfigError(f"{p}:{n}: JobId={jid[:40]} is the same record as line {prev_n} (the log, or "
                          "part of it, given twice?)", hint=hint)
    start, end, submit, prev_submit = times["start"], prev_t["end"], times["submit"], prev_t["submit"]
    if start is not None and end is not None and start < end:
        raise ConfigError(f"{p}:{n}: JobId={jid[:40]} starts at {fields.get('start')}, before its record at "
                          f"line {prev_n} ended ({prev.get('end')}): not a requeue of the same job",
                          hint=hint)
    if submit is not None and prev_submit is not None and submit < prev_submit:
        raise ConfigError(f"{p}:{n}: JobId={jid[:40]} was submitted at {fields.get('submit')}, before its "
                          f"record at line {prev_n} ({prev.get('submit')}): not a requeue of the same job",
                          hint=hint)


def _trace(p: Path, rows: Iterator[tuple[int, dict[str, str]]], source: str, limit: int | None,
           **opts: Any) -> Trace:
    """The trace of the jobs of ``rows``; a bad row's error names the file and line."""
    keep, seen = Keep(limit), {}
    for n, fields in rows:
        try:
            job = _job(fields, f"{p.name}:{n}", **opts)
        except ConfigError as exc:
            raise ConfigError(f"{p}:{n}: {exc.message}", hint=exc.hint) from None
        jid = fields.get("jobid", "")
        if jid in seen:
            raise ConfigError(f"{p}:{n}: job {jid[:40]!r} appears again (first at line {seen[jid]})",
                              hint="keep one line per job (sacct without --duplicates)")
        seen[jid] = n
        if isinstance(job, str):
            keep.skip(job)
        elif keep.wants(job.submit, checked_id(p, n, job.id)):
            keep.add(job.submit, job.id, (job.request, job.walltime, job.duration, job.account, job.user,
                                          job.tier, job.meta))
    return Trace(_built(keep), source, keep.skipped_by, path=p)
