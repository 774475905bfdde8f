"""Slurm's reservations, active and still to come, as :class:`~fabric_hpc.slurm.contract.Reservation`.

Read by every backend (:class:`~fabric_hpc.slurm.contract.ReadsReservations`): ``scontrol show reservation
--json`` (the cli backend, where the release has it; ``scontrol show reservation -o`` text otherwise),
slurmrestd ``GET /reservations`` (both dialects) and pyslurm's ``Reservations.load()``. The JSON shapes are
22.05's (plain numbers) and 23.02+'s (``{"set", "infinite", "number"}`` objects). Each record is checked on
its own: one Slurm cannot be trusted with (no name, an unreadable or missing start, an end before its start,
a node list that does not parse) is left out and named with the reason, never a traceback; the others are
kept. :func:`upcoming` gives the view the nodes a job that does not name a reservation must avoid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from fabric_hpc.errors import ExternalError
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.contract import Reservation, SlurmError
from fabric_hpc.slurm.parse import hosts, parse_key_values

#: An end Slurm leaves unset or infinite: the reservation never ends (``Duration=UNLIMITED``).
FOREVER = float("inf")
Read = tuple[list[Reservation], dict[str, str]]


def checked(name: str, start: float | None, end: float | None, nodes: str | None,
            flags: Iterable[str]) -> Reservation:
    """A reservation from its decoded fields; SlurmError naming what cannot be trusted."""
    if not name:
        raise SlurmError("a reservation without a name")
    if not start or start < 0:
        raise SlurmError(f"reservation {name}: no usable start time ({start!r})")
    end = FOREVER if end is None else end
    if end < start:
        raise SlurmError(f"reservation {name}: it ends ({end:.0f}) before it starts ({start:.0f})")
    try:
        names = hosts(nodes)
    except ExternalError as exc:
        raise SlurmError(f"reservation {name}: {exc.message}") from None
    return Reservation(name=name, start=float(start), end=float(end), nodes=names,
                       flags=tuple(f.upper() for f in flags if f))


def _collect(items: Iterable[Any], one: Any) -> Read:
    """Each item through ``one``; a record it refuses is left out, named with the reason."""
    kept: list[Reservation] = []
    ignored: dict[str, str] = {}
    for i, item in enumerate(items):
        try:
            kept.append(one(item))
        except SlurmError as exc:
            ignored[_name_of(item, i)] = f"{exc.message}; ignored"
    return kept, ignored


def _name_of(item: Any, i: int) -> str:
    """The name a refused record gives itself, else its place in the answer."""
    if isinstance(item, str):
        name: Any = item.partition("ReservationName=")[2].split(" ", 1)[0]
    elif isinstance(item, Mapping):
        name = item.get("name")
    else:
        name = getattr(item, "name", None)
    return name if isinstance(name, str) and name else f"record {i + 1}"


def from_json(d: Any) -> Reservation:
    """One record of ``scontrol show reservation --json`` / slurmrestd ``reservations``."""
    d = decode.record(d, "a reservation record")
    name = decode.text(d, "name", "reservation")
    what = f"reservation {name or '?'}"
    return checked(name, decode.number(d, "start_time", what), decode.number(d, "end_time", what),
                   decode.text(d, "node_list", what), decode.words(d, "flags", what))


def json_answer(data: Any, what: str) -> Read:
    """The reservations of a JSON answer (its ``reservations`` list)."""
    data = decode.answer(data, what)
    items = data.get("reservations")
    if items is None:
        return [], {}
    if not isinstance(items, list):
        raise SlurmError(f"{what} answered a {type(items).__name__} for 'reservations', expected a list")
    return _collect(items, from_json)


def local_time(text: str | None, what: str = "scontrol") -> float | None:
    """A time as scontrol's text prints it (ISO 8601, local time) in UNIX seconds; None for
    ``Unknown``/``None``/``N/A``/``(null)``; SlurmError naming ``what`` for anything else."""
    if not text or text in ("Unknown", "None", "N/A", "(null)"):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SlurmError(f"{what}: unreadable time {text!r}") from None


def from_line(line: str) -> Reservation:
    """One line of ``scontrol show reservation -o`` (local times, as scontrol prints them)."""
    try:
        kv = parse_key_values(line)
    except ExternalError as exc:
        raise SlurmError(exc.message) from None
    name = kv.get("ReservationName", "")
    what = f"reservation {name or '?'}"
    flags = [f for f in kv.get("Flags", "").split(",") if f and f != "(null)"]
    return checked(name, local_time(kv.get("StartTime"), what), local_time(kv.get("EndTime"), what),
                   kv.get("Nodes"), flags)


def text_answer(out: str) -> Read:
    """The reservations of ``scontrol show reservation -o`` (``No reservations in the system``: none)."""
    lines = [ln for ln in out.splitlines() if ln.strip() and "ReservationName=" in ln]
    return _collect(lines, from_line)


def from_pyslurm(r: Any) -> Reservation:
    """A ``pyslurm.Reservation`` (25.11): name, start_time, end_time, nodes, flags (a flag set)."""
    name = getattr(r, "name", None)
    if not isinstance(name, str):
        raise SlurmError(f"pyslurm reservation: name is {type(name).__name__}, expected a string")
    times = [getattr(r, k, None) for k in ("start_time", "end_time")]
    if not all(t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)) for t in times):
        raise SlurmError(f"reservation {name}: pyslurm answered times {times!r}")
    nodes = getattr(r, "nodes", None)
    if nodes is not None and not isinstance(nodes, str):
        raise SlurmError(f"reservation {name}: pyslurm answered nodes {nodes!r}")
    flags = getattr(r, "flags", None)
    words = [str(getattr(f, "name", f)) for f in flags] if flags is not None else []
    return checked(name, times[0], times[1], nodes, [PYSLURM_FLAGS.get(w.upper(), w) for w in words])


#: pyslurm 25.11's ``ReservationFlags`` names -> Slurm's own (scontrol's and slurmrestd's: MAINT, not
#: MAINTENANCE), so a Reservation's flags read alike whichever backend read them
PYSLURM_FLAGS = {"MAINTENANCE": "MAINT", "IGNORE_RUNNING_JOBS": "IGNORE_JOBS", "STATIC_NODES": "STATIC",
                 "PARTITION_NODES_ONLY": "PART_NODES", "USER_DELETION": "USER_DELETE", "PURGE": "PURGE_COMP",
                 "SPECIFIC_NODES": "SPEC_NODES", "NO_JOB_HOLD_AFTER_END": "NO_HOLD_JOBS_AFTER_END"}


def pyslurm_answer(items: Iterable[Any]) -> Read:
    return _collect(items, from_pyslurm)


def upcoming(resvs: Iterable[Reservation], known: Collection[str], now: float) -> list[Reservation]:
    """The reservations that have not started yet and hold hosts of the fabric model (active ones reach
    the view through the nodes' ``RESERVED`` state); those that ended are dropped."""
    return [r for r in resvs if r.start > now and r.end > now and any(n in known for n in r.nodes)]


def kept_out(resvs: Iterable[Reservation], mine: Collection[str], now: float,
             time_limit_min: int | None) -> dict[str, Reservation]:
    """host -> the first reservation (not one of ``mine``) that keeps a job starting now with that time
    limit off it (:meth:`Reservation.keeps_out`; no limit, None or 0 as in the view: overlaps every
    reservation to come)."""
    end = now + time_limit_min * 60.0 if time_limit_min else None
    out: dict[str, Reservation] = {}
    for r in sorted(resvs, key=lambda r: r.start):
        if r.name in mine or not r.keeps_out(now, end):
            continue
        for host in r.nodes:
            out.setdefault(host, r)
    return out
