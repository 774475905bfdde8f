"""``fabric slurm why JOBID``: why a job waits, or why it runs where it runs, in plain words."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabric_hpc.hostlist import compress
from fabric_hpc.inputs import os_error
from fabric_hpc.slurm.audit import AUDIT_LOG, TAIL_BYTES, clock, read_tail
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.actions import USER_PIN
from fabric_hpc.slurm.deferral_store import own_begins, own_pins
from fabric_hpc.slurm.contract import (BAD_CONSTRAINTS, Job, ReadsReservations, SlurmClient, SlurmError,
                                     limit_reason)
from fabric_hpc.slurm.parse import reason_words
from fabric_hpc.slurm.why_hosts import WAITS_FOR, host_facts, refused_hosts


def _at(ts: float) -> str:
    """A time, with its date when that is not today (a decision of days ago, a --begin, a reservation days
    ahead); one the system cannot show (a damaged record) as its number."""
    return clock(ts, today="%H:%M:%S")


def last_decisions(state_dir: str | Path | None, job_id: int,
                   submitted: float | None = None) -> dict[str, dict[str, Any]]:
    """The agent's latest audit entries about one job, by kind (place, waiting, requeue, handoff);
    ``{"missing": {"path": ...}}`` when there is no decision log to read (no state dir given, or none
    there), ``{"unreadable": ...}`` when this user may not read it. ``older`` (path, ``since``: the first
    record read, ``rotated``) when neither a place nor a handoff of the job was read and its records may lie
    before the part read: the log goes back further than :data:`~fabric_hpc.slurm.audit.TAIL_BYTES`, or
    begins with ``agent.logs_reopened`` (logrotate moved the rest away; ``rotated``), and the part read begins
    after the job's ``submitted`` time (unknown: any such part); or the whole log begins after it."""
    out: dict[str, dict[str, Any]] = {}
    path = Path(state_dir) / AUDIT_LOG if state_dir else None
    try:
        if path is None or not path.is_file():
            return {"missing": {"path": None if path is None else str(path)}}
        tail = read_tail(path.parent)  # the log's end, into the rotated one (audit.py)
    except PermissionError:  # the state dir is the service user's (0750): Slurm's side is still told
        return {"unreadable": {"path": str(path)}}
    except FileNotFoundError:  # removed meanwhile
        return {"missing": {"path": str(path)}}
    except OSError as exc:
        raise os_error(exc, "the agent's audit log", path) from None
    for e in tail.entries:
        kind = e.get("event", "").removeprefix("agent.")
        if e.get("job") == job_id or e.get("for_job") == job_id:
            out[kind] = e
        elif kind == "waiting" and str(job_id) in (e.get("jobs") or {}):
            out["waiting"] = {"ts": e["ts"], "reason": e["jobs"][str(job_id)]}
            if isinstance(hold := (e.get("holds") or {}).get(str(job_id)), dict):  # a compact hold
                out["waiting"]["hold"] = hold
            if isinstance(held := (e.get("reserved") or {}).get(str(job_id)), dict):  # the policy's
                out["waiting"]["reserved"] = held
    since = tail.entries[0]["ts"] if tail.entries else None
    reopened = bool(tail.entries) and tail.entries[0].get("event") == "agent.logs_reopened"
    before = since is not None and submitted is not None and since > submitted  # the log began later
    if not {"place", "handoff"} & set(out) and (
            (tail.truncated or reopened) and (submitted is None or since is None or since > submitted)
            or before):
        out["older"] = {"path": str(path), "since": since, "rotated": not tail.truncated}
    return out


def explain(client: SlurmClient, job_id: int, *, state_dir: str | Path | None = None) -> dict[str, Any]:
    """A dict with ``text`` (sentences) plus the facts behind them."""
    job = client.job(job_id)
    dec = last_decisions(state_dir, job_id, job.submit_time)
    if state_dir and job.pending and (begin := own_begins(state_dir).get(job_id)) is not None:
        dec["own_begin"] = {"ts": begin}  # its --begin the agent took over (Slurm shows the agent's deferral)
    if job.pending and job.fabric_marked and job.req_nodes and _user_pin(state_dir, job, dec):
        dec["user_pin"] = {"hosts": compress(list(job.req_nodes))}
    place = dec.get("place")
    lines = [_headline(job, place)]
    if job.pending:
        lines += _pending_lines(job, dec, lambda: host_facts(client, job))
        lines += _upcoming_lines(client, job)
    elif place:
        lines.append(_place_line(job, place))
    elif not ("unreadable" in dec or ("missing" in dec and job.fabric_marked)):  # else: said below
        lines.append(_started_by(job, job_id, dec))
    if "unreadable" in dec:
        lines.append(f"The agent's audit log ({dec['unreadable']['path']}) is not readable by this user "
                     "(run as root or as the agent's service user to see its decisions).")
    if "missing" in dec and job.fabric_marked:
        log = dec["missing"]["path"]
        where = f"no decision log at {log}" if log else "no state dir given"
        lines.append(f"What the fabric agent decided for it cannot be told: {where} (give the agent's state "
                     "directory: --state-dir, agent.state_dir of its config).")
    if "requeue" in dec and dec["requeue"].get("job") == job_id:
        r = dec["requeue"]
        lines.append(f"It was requeued at {_at(r['ts'])} to make room for job {r['for_job']} "
                     f"({r.get('gpu_hours_lost', 0):.2f} GPU-hours lost: the work since its start or last "
                     "checkpoint plus the modelled restart).")
    return {"job": job_id, "state": job.state, "reason": job.reason, "nodes": list(job.node_list),
            "decisions": dec, "text": " ".join(lines)}


def _user_pin(state_dir: str | Path | None, job: Job, dec: dict[str, dict[str, Any]]) -> bool:
    """The job's ReqNodeList is not the agent's pin: its hand-over said so, or the pins it saved differ."""
    if str(dec.get("handoff", {}).get("reason", "")).startswith(USER_PIN):
        return True
    pins = own_pins(state_dir) if state_dir else None
    return pins is not None and pins.get(job.job_id) != frozenset(job.req_nodes)


def _older_line(job_id: int, older: dict[str, Any]) -> str:
    """Who placed the job cannot be told: its records lie before the part of the decision log read."""
    log, since = older["path"], older.get("since")
    start = f", from {_at(since)} on" if since is not None else ""
    grep = f"grep -E '\"(for_)?job\":{job_id}[,}}]'"
    if older.get("rotated"):  # the whole log was read: it begins after the job was submitted
        return (f"What the fabric agent decided for it is older than the part of the agent's decision log "
                f"read (the log begins{start or ' later'}: logrotate moved the older records away, or the "
                f"agent started after the job was submitted), so who placed it cannot be told from there; "
                f"search the moved copies (logrotate's olddir): {grep} {log}.1 <olddir>/decisions.jsonl-*")
    return (f"What the fabric agent decided for it is older than the part of the agent's decision log read "
            f"(its last {TAIL_BYTES >> 20} MiB{start}), so who placed it cannot be told from there; search "
            f"the whole log: {grep} {log}.1 {log}")


def _started_by(job: Job, job_id: int, dec: dict[str, Any]) -> str:
    """Who started a job the agent's log has no ``agent.place`` of."""
    if "handoff" in dec:
        return _handoff_line(dec["handoff"])
    if _grouped_gang(job):
        return _grouped_line(job)
    if "older" in dec and job.fabric_marked:
        return _older_line(job_id, dec["older"])
    if job.fabric_marked:
        return ("The fabric agent did not place it: Slurm's own scheduler did (the agent was down or the "
                "deferral ran out).")
    return "It is not marked for fabric placement; Slurm's own scheduler placed it."


def _handoff_line(h: dict[str, Any]) -> str:
    return (f"The fabric agent handed it to Slurm's own scheduler at {_at(h['ts'])}: {h.get('reason', '?')} "
            "(Slurm places it without its fabric: options).")


def _size(job: Job) -> str:
    """The job's size as asked: -N × --gpus-per-node, -N with --gpus in all, or the GPUs Slurm gave it."""
    if job.gpus_per_node:
        return f"{job.nodes} node(s) × {job.gpus_per_node} GPU(s)"
    gpus = job.gpus_per_job or sum(len(idx) for idx in job.gpus.values())
    return f"{job.nodes} node(s), {gpus} GPU(s) in all" if gpus else f"{job.nodes} node(s)"


def _completing_on_placed(job: Job, place: dict[str, Any] | None) -> bool:
    """Completing on some of the hosts the agent chose: Slurm lists only the nodes still completing
    (and counts only those in -N), so the job ran on all of the agent's hosts."""
    return (job.state == "COMPLETING" and place is not None and bool(job.node_list)
            and set(job.node_list) <= set(place["hosts"]))


def _place_line(job: Job, place: dict[str, Any]) -> str:
    doms = ", ".join(f"{n} {lvl}(s)" for lvl, n in sorted((place.get("domains") or {}).items()))
    ran = compress(list(job.node_list))
    if not job.node_list or sorted(job.node_list) == sorted(place["hosts"]) or \
            _completing_on_placed(job, place):
        tail = ""
    elif job.state == "COMPLETING":
        tail = f", but it is completing on {ran}, which the agent did not choose"
    else:
        tail = f", but Slurm ran it on {ran}"
    return (f"The fabric agent chose {compress(place['hosts'])} at {_at(place['ts'])} "
            f"(solver {place.get('solver')}, cost {place.get('cost', 0):.2f}; spans {doms or 'n/a'}){tail}.")


def _headline(job: Job, place: dict[str, Any] | None = None) -> str:
    if place is not None and _completing_on_placed(job, place):  # -N, NodeList: the nodes still completing
        what = _size(replace(job, nodes=max(job.nodes, len(place["hosts"]))))
        still = compress(list(job.node_list))
        return f"Job {job.job_id} ({what}) is completing (still finishing on {still})."
    what = _size(job)
    if job.pending:
        return f"Job {job.job_id} ({what}) is pending: {reason_words(_reason(job))}."
    if job.node_list:
        return f"Job {job.job_id} ({what}) is {job.state.lower()} on {compress(list(job.node_list))}."
    return f"Job {job.job_id} ({what}) is {job.state.lower()}."


def _reason(job: Job) -> str:
    """Slurm's reason for a pending job; for a dependent one whose reason reads ``None`` (any update of
    the job resets it, the agent's deferral renewals too, until Slurm's next pass) the one its dependency
    gives."""
    if job.reason != "None" or not job.dependent:
        return job.reason
    return "DependencyNeverSatisfied" if dependency_failed(job.dependency) else "Dependency"


def _blocked_line(job: Job) -> str:
    """Why the agent leaves a held or dependent fabric job alone, and when it takes it up again."""
    if job.blocked == "held":
        why, then = "while it is held", "once it is released, it comes back to the agent"
    elif job.reason == "DependencyNeverSatisfied" or dependency_failed(job.dependency):
        why = "as its dependency can never be satisfied"
        if words := dependency_words(job.dependency):  # also when the reason reads None (22.05 after updates)
            why += f" ({job.dependency}: {'; '.join(words)})"
        then = (f"it comes back to the agent only if its dependency is changed (scontrol update "
                f"JobId={job.job_id} Dependency=...)")
    else:
        why = "while its dependency is unfulfilled"
        then = "once it is satisfied, the job comes back to the agent"
    return (f"The fabric agent neither places it nor keeps GPUs for it {why}; it keeps the job deferred, "
            f"so {then}.")


def _grouped_gang(job: Job) -> bool:
    """An array task or het component that says fabric, or a GPU gang (``-N2`` or more with GPUs per node)
    the plugin would have marked had it been submitted alone."""
    return bool(job.grouped) and (job.fabric_comment or (job.nodes >= 2 and job.gpus_per_node > 0
                                                         and job.comment != "nofabric"))


def _grouped_line(job: Job) -> str:
    what = "a task of job array" if job.grouped == "array" else "a component of heterogeneous job"
    lead = job.array_job_id if job.grouped == "array" else job.het_job_id
    return (f"It is {what} {lead}: the fabric agent places no job arrays or heterogeneous jobs, "
            "whatever their comment says; Slurm's own scheduler places it (submit the tasks as separate "
            "jobs for fabric placement).")


def dependency_failed(dependency: str) -> bool:
    """Slurm's dependency text says it can never be satisfied: a ``(failed)`` part of an all-of list
    (``afterok:12(failed),afterany:13(unfulfilled)``), or every part of an any-of list (``?``). Read
    besides the reason, which is ``None`` after any update of the job until Slurm's next pass (22.05)."""
    if "?" in dependency:
        return all(part.endswith("(failed)") for part in dependency.split("?"))
    return "(failed)" in dependency


#: Why Slurm marks a dependency part ``(failed)``, by type (job_scheduler.c ``_test_job_dependency_common``:
#: afterok is met when the job completes successfully, afternotok when it ends any other way).
_NEVER_MET = {
    "afterok": "job {} did not complete successfully (it failed, was cancelled, timed out or lost its node), "
               "and afterok waits for its success",
    "afternotok": "job {} completed successfully, and afternotok waits for it to fail",
    "aftercorr": "a task of job array {} did not complete successfully, and aftercorr waits for the success "
                 "of the task of the same index",
}
_DEP_PART = re.compile(r"^(?P<type>[a-z]+)(?::(?P<job>[^()]+))?\((?P<state>\w+)\)$")


def dependency_words(dependency: str) -> list[str]:
    """Each ``(failed)`` part of Slurm's dependency text in the terms of its type: ``afternotok:15(failed)``
    -> "job 15 completed successfully, and afternotok waits for it to fail"."""
    out = []
    for part in re.split(r"[,?]", dependency):
        m = _DEP_PART.match(part.strip())
        if m is None or m["state"] != "failed":
            continue
        job, said = (m["job"] or "").partition("+")[0], _NEVER_MET.get(m["type"])
        out.append(said.format(job) if said and job else f"{part.strip()[:-8]} can no longer be met")
    return out


_PIN_TIMEOUT = ("If it has not started within the agent's pin_timeout_s, the agent places it on other hosts "
                "(and hands it to Slurm's own scheduler after a few such pins).")
#: The agent's own waiting reasons (``agent.waiting``) where Slurm's words for the same name mislead.
AGENT_REASONS = {"BeginTime": "its own begin time (--begin, or Slurm's delay after a requeue) has not come; "
                              "it is placed once that time has come"}


def _upcoming_lines(client: SlurmClient, job: Job) -> list[str]:
    """The hosts the agent keeps a pending fabric job off for reservations still to come that it would run
    into (view.Hosts.reserved_soon), one sentence per reservation; none where they are not read."""
    if not (job.fabric_marked and not job.blocked and isinstance(client, ReadsReservations)):
        return []
    try:
        found, _ = client.reservations()
    except SlurmError:
        return []
    now = time.time()
    mine = {r for r in job.reservation.split(",") if r}
    by_resv: dict[str, list[str]] = {}
    starts = {r.name: r.start for r in found}
    for host, r in resv.kept_out([r for r in found if r.start > now], mine, now, job.time_limit_min).items():
        by_resv.setdefault(r.name, []).append(host)
    until = (f"before its time limit ({job.time_limit_min} min) would end" if job.time_limit_min is not None
             else "and it has no time limit")
    return [f"The fabric agent keeps it off {compress(sorted(hs))}: reservation {name} starts there at "
            f"{_at(starts[name])}, {until} (Slurm would not start it there before the reservation ends)."
            for name, hs in by_resv.items()]


def _own_begin(job: Job, dec: dict[str, dict[str, Any]]) -> float:
    """The job's own begin time: the one the agent took over (Slurm's begin time is then the agent's deferral,
    that time + ``fallback_s``), else Slurm's."""
    own = dec.get("own_begin", {}).get("ts")
    return own if own is not None and job.begin_time is not None and own <= job.begin_time else job.begin_time


_LEVEL_WORDS = {"nvlink": ("NVLink domain", "NVLink domains"), "leaf": ("leaf", "leaves")}


def _topology_line(waiting: dict[str, Any]) -> str:
    """A gang the agent's policy holds for a compact placement (reason ``Topology``): where, until when
    (the ``agent.waiting`` record's ``holds``, where the agent wrote them) and how to skip the wait."""
    hold = waiting.get("hold") or {}
    k, level, until = hold.get("domains"), hold.get("level"), hold.get("until")
    if isinstance(k, int) and k > 0 and isinstance(level, str):
        one, many = _LEVEL_WORDS.get(level, (f"{level} domain", f"{level} domains"))
        where = f"at most {k} {one if k == 1 else many}"
    else:
        where = "as few NVLink domains or leaves as hold it"
    end = (f"until {_at(until)} (its compact_wait_s hold)" if isinstance(until, (int, float))
           else "until its compact_wait_s hold ends (fabric policy: 900 s after submission)")
    return (f"At {_at(waiting['ts'])} the agent's policy held it for a compact placement: its GPUs are "
            f"free, but not in {where}; it waits for one {end}, then takes any placement. To skip the wait, "
            "submit with --comment=fabric:switches=N or fabric:within=LEVEL (a gang that sets either is "
            "not held).")


def _reserved_line(waiting: dict[str, Any]) -> str | None:
    """The policy's reservation for the job (the ``agent.waiting`` record's ``reserved``): when it starts at
    the latest (the running jobs' time limits; earlier when they end earlier), on how many hosts, after
    which jobs."""
    r = waiting.get("reserved")
    try:
        start, hosts, after = float(r["start"]), int(r["hosts"]), [int(j) for j in r.get("after") or ()]
    except (TypeError, KeyError, ValueError):
        return None  # none, or a record this version cannot read
    when = (f" when job {after[0]} ends" if len(after) == 1 else
            f" when jobs {', '.join(map(str, after))} end" if after else "")
    return (f"It is reserved: expected to start by {_at(start)} on {hosts} host{'s' if hosts != 1 else ''}"
            f"{when} (their time limits; sooner if they end sooner); later jobs start before it only where "
            "they end in time.")


def _fresh_waiting(dec: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The agent's last waiting reason for the job, unless it is older than the agent's last pin of it."""
    waiting, place = dec.get("waiting"), dec.get("place")
    if waiting is None or (place is not None and waiting["ts"] < place["ts"]):
        return None
    return waiting


def _pinned_lines(job: Job, dec: dict[str, dict[str, Any]], facts: Callable[[], tuple[str, str] | None]
                  ) -> list[str]:
    """A pinned job nothing else explains: its begin time, what it waits for, and its hosts as they are."""
    pin = compress(list(job.req_nodes))
    bad, busy = facts() or ("", "")
    note = "; ".join(x for x in (bad, busy) if x)
    if job.begin_time and job.begin_time > time.time():  # Slurm starts it nowhere before that
        left = f"the pin to {pin} it still carries is from before" + (f" ({note})" if note else "")
        waiting = _fresh_waiting(dec)
        if waiting is None or waiting["reason"] == "BeginTime":  # waited out (view.PinRules.not_before)
            return [f"It may not start before {_at(_own_begin(job, dec))} (Slurm's delay after a requeue, or "
                    f"its own --begin): {left}; the fabric agent places it once that time has come, not "
                    "necessarily there."]
        return [f"It waits for the fabric agent ({left}); if the agent does not place it, Slurm takes it "
                f"over at {_at(job.begin_time)} on those hosts."]
    if job.reason in WAITS_FOR:
        where = f" ({note})" if note else ""
        return [f"The fabric agent pinned it to {pin}{where}, but free GPUs there do not start it: Slurm "
                f"waits until its reason above is gone. {_PIN_TIMEOUT}"]
    if bad:
        return [f"The fabric agent pinned it to {pin}, but {note}: Slurm cannot start it there, and the "
                "agent places it on other hosts at its next cycle."]
    if busy:
        return [f"The fabric agent pinned it to {pin}, but {busy}: Slurm starts it there once they are free; "
                "unless a job there is ending, the agent places it on other hosts at its next cycle."]
    return [f"The fabric agent pinned it to {pin}; Slurm starts it as soon as those GPUs are free."]


def _held_only(facts: Callable[[], tuple[str, str] | None]) -> str:
    """What other jobs hold on a pinned job's hosts, when none of them is down, drained or reserved ('' if
    something is, or nothing is held): Slurm's ``ReqNodeNotAvail`` then means the memory or CPUs."""
    bad, held = facts() or ("", "")
    return "" if bad else held


def _own_hosts_line(job: Job, facts: Callable[[], tuple[str, str] | None]) -> str:
    """An unmarked job that names its hosts itself (``sbatch -w``): the fabric agent never touches it."""
    own = f"It asks for {compress(list(job.req_nodes))} itself (-w/--nodelist; not a fabric job, the agent " \
          "does not place it)"
    if job.blocked:  # held or dependent: the headline says why
        return f"{own}."
    if job.reason == BAD_CONSTRAINTS:
        return f"{own}, and those nodes cannot satisfy the job: it stays pending until its node list changes."
    if limit_reason(job.reason):
        return f"{own}; Slurm holds it back under a limit ({reason_words(job.reason)}) until it allows."
    if refused := refused_hosts(job.reason):
        return f"{own}, and Slurm does not start it there: {refused}."
    note = "; ".join(x for x in (facts() or ("", "")) if x)
    return f"{own}" + (f": {note}" if note else "") + "; Slurm starts it there once they can take it."


def _user_pin_line(pin: dict[str, Any]) -> str:
    return (f"Its ReqNodeList ({pin['hosts']}) was set by someone else (scontrol update), not by the fabric "
            "agent: the agent leaves it as it is and hands the job to Slurm, which starts it only on those "
            "hosts.")


def _pending_lines(job: Job, dec: dict[str, dict[str, Any]],
                   facts: Callable[[], tuple[str, str] | None]) -> list[str]:
    if _grouped_gang(job):
        return [_grouped_line(job)]
    out = []
    blocked = bool(job.blocked and job.fabric_marked and "handoff" not in dec)
    if blocked:
        out.append(_blocked_line(job))
        if "user_pin" in dec:
            out.append(_user_pin_line(dec["user_pin"]))
        elif job.req_nodes:
            out.append(f"The agent pinned it to {compress(list(job.req_nodes))} before; it clears that pin "
                       "at its next cycle.")
        elif "unpin" in dec:
            out.append(f"At {_at(dec['unpin']['ts'])} the agent cleared the pin it had set "
                       f"({dec['unpin'].get('reason')}).")
    elif "user_pin" in dec:  # scontrol update ReqNodeList= by a user or an admin: not the agent's pin
        out.append(_user_pin_line(dec["user_pin"]))
    elif job.req_nodes and not job.fabric_marked:  # the user's own -w: no agent pinned it
        out.append(_own_hosts_line(job, facts))
    elif job.req_nodes and job.reason == BAD_CONSTRAINTS:
        out.append(f"Slurm will not start it on {compress(list(job.req_nodes))}, the hosts it is pinned to: those "
                   "nodes cannot satisfy the job (its GPU type, a constraint the agent does not see, or on a "
                   "topology/block cluster hosts in several blocks without --segment); the "
                   "agent hands it to Slurm's own scheduler, which places it anywhere it fits.")
    elif job.req_nodes and limit_reason(job.reason):
        out.append(f"Slurm holds it back under a limit ({reason_words(job.reason)}), so the pin to "
                   f"{compress(list(job.req_nodes))} cannot start it: the fabric agent hands it to Slurm's "
                   "own scheduler at its next cycle, and Slurm starts it once the limit allows.")
    elif job.req_nodes and job.reason.startswith("ReqNodeNotAvail") and (held := _held_only(facts)):
        out.append(f"The fabric agent pinned it to {compress(list(job.req_nodes))}, but {held}: Slurm does "
                   f"not start it there until they are free. {_PIN_TIMEOUT}")
    elif job.req_nodes and (refused := refused_hosts(job.reason)):
        out.append(f"The fabric agent pinned it to {compress(list(job.req_nodes))}, but Slurm does not start "
                   f"it there: {refused}. {_PIN_TIMEOUT}")
    elif job.req_nodes:
        out += _pinned_lines(job, dec, facts)
    elif job.fabric_marked and job.begin_time and job.begin_time > time.time():
        if dec.get("waiting", {}).get("reason") == "BeginTime":  # no fabric deferral (view.PinRules.not_before)
            out.append(f"It may not start before {_at(_own_begin(job, dec))} (its own --begin, or Slurm's "
                       "delay after a requeue); the fabric agent places it once that time has come.")
        else:
            out.append(f"It waits for the fabric agent; if the agent does not place it, Slurm takes it over at "
                       f"{_at(job.begin_time)}.")
    if "handoff" in dec:
        out.append(_handoff_line(dec["handoff"]))
    elif (waiting := _fresh_waiting(dec)) and not blocked:  # the policy has not seen it since
        if waiting["reason"] == "Topology":
            out.append(_topology_line(waiting))
        else:
            words = AGENT_REASONS.get(waiting["reason"]) or reason_words(waiting["reason"])
            out.append(f"At {_at(waiting['ts'])} the agent's policy said: {words}.")
        if reserved := _reserved_line(waiting):
            out.append(reserved)
    if "failed" in dec and dec["failed"]["ts"] >= dec.get("place", {}).get("ts", 0):
        f = dec["failed"]
        out.append(f"At {_at(f['ts'])} Slurm refused the agent's {f.get('action')}: {f.get('error')}.")
    return out
