"""Decoding Slurm's JSON answers by their shape (one layer for the cli, rest and replay clients).

The same records come in two families of shapes, told apart per field, never by a version switch:

* Slurm 22.05 (``sinfo/squeue --json``, slurmrestd ``openapi/v0.0.38``): numbers are plain ints
  (``null`` when unset), ``state`` is a string with a separate ``state_flags`` list, features are
  a comma string, TRES read ``gres:gpu:3``;
* Slurm 23.02+ (data_parser ``v0.0.39``…``v0.0.44``): numbers may be ``{"set", "infinite",
  "number"}`` objects, ``state`` is a list (``["IDLE", "DRAIN"]``, base state first), features a
  list, TRES read ``gres/gpu:3``; ``sinfo --json`` answers per-partition ``sinfo`` records without
  a ``nodes`` list (:func:`nodes_answer` returns None: ask ``scontrol show nodes --json``).

One version fact is read: an answer's data_parser (:func:`data_parser`). v0.0.45 (Slurm 26.05) writes a job's
``shared`` as its removed-field marker ``[]`` for every job and says ``--exclusive`` nowhere else in a job
record, so the clients read jobs in :data:`JOBS_PARSER` where the Slurm has it.

Anything else is a :class:`~fabric_hpc.slurm.contract.SlurmError` naming the record, the field and
the type of the value it found; no ``TypeError``/``KeyError``/``ValueError`` leaves this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from fabric_hpc.errors import ExternalError
from fabric_hpc.gcpause import gc_paused  # noqa: F401 (the clients' reads: @decode.gc_paused())
from fabric_hpc.slurm.contract import Job, Node, SlurmError
from fabric_hpc.slurm.parse import normal_reason
from fabric_hpc.slurm.parse import (gpu_count, gpu_indices, gpu_types, gpus_requested, hosts, parse_gres,
                                   parse_state)

_NUMBER_KEYS = frozenset({"set", "infinite", "number"})
_LIMIT = 2**64  # beyond 64 bits: not a number Slurm sends
_WORD = re.compile(r"^[A-Za-z_]+$")
#: the newest data_parser whose job records say ``--exclusive`` (``shared``: ``["none"]``). v0.0.45 (Slurm
#: 26.05.3, parsers.c JOB_INFO: ``add_removed(JOB_SHARED, "shared", ..)``) answers ``[]`` for every job and
#: has no other field for it in job records (only sacct's have ``exclusive``); 26.05 has v0.0.42-v0.0.44 too
JOBS_PARSER = (0, 0, 44)
_PARSER = re.compile(r"^data_parser/v(\d+)\.(\d+)\.(\d+)$")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _bad(what: str, key: str, value: Any, expected: str) -> SlurmError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return SlurmError(f"{what}: field {key!r} is {_kind(value)} {shown}, expected {expected}",
                      hint="an answer of a Slurm version fabric does not know? report it with the JSON")


def record(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` as a JSON object, or a SlurmError."""
    if not isinstance(value, Mapping):
        raise SlurmError(f"{what} is {_kind(value)}, expected a JSON object")
    return value


def number(d: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> float | None:
    """A plain number or a ``{"set", "infinite", "number"}`` object; None when unset or infinite."""
    if key not in d:
        if required:
            raise SlurmError(f"{what}: Slurm's answer has no {key!r} field")
        return None
    value = d[key]
    if value is None and not required:
        return None
    kind = type(value)
    if kind is int and -_LIMIT < value < _LIMIT:  # the usual cases first: :func:`_finite`'s answer
        return value
    if kind is dict and value.keys() <= _NUMBER_KEYS and type(num := value.get("number")) is int \
            and -_LIMIT < num < _LIMIT and value.get("set", True) is True \
            and value.get("infinite", False) is False:
        return num
    if _finite(value):
        return value
    if isinstance(value, Mapping) and set(value) <= _NUMBER_KEYS and "number" in value:
        is_set, infinite, num = value.get("set", True), value.get("infinite", False), value["number"]
        if isinstance(is_set, bool) and isinstance(infinite, bool) and _finite(num):
            return num if is_set and not infinite else None
    raise _bad(what, key, value, "a number or {set, infinite, number}")


def _finite(value: Any) -> bool:
    """A JSON number Slurm can send (no bool, NaN, infinity or beyond 64 bits)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and abs(value) < 2**64


def integer(d: Mapping[str, Any], key: str, what: str, default: int = 0) -> int:
    value = number(d, key, what)
    return default if value is None else int(value)


def epoch(d: Mapping[str, Any], key: str, what: str) -> float | None:
    """A UNIX time; 0 and unset mean unknown (None)."""
    value = number(d, key, what)
    return float(value) if value else None


def text(d: Mapping[str, Any], key: str, what: str, default: str = "", *, required: bool = False) -> str:
    if key not in d:
        if required:
            raise SlurmError(f"{what}: Slurm's answer has no {key!r} field")
        return default
    value = d[key]
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(what, key, value, "a string")
    return value


def boolean(d: Mapping[str, Any], key: str, what: str, *, default: bool) -> bool:
    """A JSON boolean (``"requeue": true``); ``default`` when absent or null."""
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(what, key, value, "true or false")
    return value


def words(d: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    """A list of strings or a comma-separated string (``"a,b"`` / ``["a", "b"]``)."""
    value = d.get(key)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(w for w in value.split(",") if w and w != "(null)")
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        return tuple(value)
    raise _bad(what, key, value, "a list of strings or a comma-separated string")


def state(d: Mapping[str, Any], key: str, what: str, flags_key: str | None = None) -> tuple[str, tuple[str, ...]]:
    """``"mixed"`` (+ ``state_flags``) or ``["MIXED", "DRAIN"]`` -> (base, flags)."""
    if key not in d:
        raise SlurmError(f"{what}: Slurm's answer has no {key!r} field")
    value = d[key]
    if isinstance(value, str) and value:
        parts = value.split("+")
    elif isinstance(value, list) and value and all(isinstance(p, str) and p for p in value):
        parts = list(value)
    else:
        raise _bad(what, key, value, "a state string or a non-empty list of states")
    extra = words(d, flags_key, what) if flags_key else ()
    if not all(_WORD.match(p) for p in [*parts, *extra]):
        raise _bad(what, key, value, "state words (letters and _)")
    return parts[0], tuple(p.upper() for p in parts[1:]) + tuple(f.upper() for f in extra)


def parsed(what: str, fn: Any, *args: Any) -> Any:
    """Run a text parser (:mod:`parse`); its ExternalError becomes a SlurmError naming the record.

    A parser of one string whose answer is immutable (:data:`_PURE`) is asked once per distinct
    string (an answer of thousands of jobs repeats the same GRES, TRES and states)."""
    try:
        if fn in _PURE and len(args) == 1 and (args[0] is None or type(args[0]) is str):
            return _once(fn, args[0])
        return fn(*args)
    except SlurmError:
        raise
    except ExternalError as exc:
        raise SlurmError(f"{what}: {exc.message}", hint=exc.hint) from None


def _gpu_type(gres: str | None) -> str | None:
    return gpu_types(parse_gres(gres))


def _state_of(parts: str | None) -> tuple[str, tuple[str, ...]]:
    """:func:`parse_state` of ``"BASE+FLAG+…"`` (hashable, so :func:`_once` can keep the answer)."""
    return parse_state((parts or "").split("+"))


#: Parsers of one string that return immutable values (ints, str, tuples): safe to remember.
_PURE = frozenset({gpu_count, gpus_requested, gpu_indices, hosts, _gpu_type, _state_of})


@functools.lru_cache(maxsize=8192)
def _once(fn: Any, text: str | None) -> Any:
    return fn(text)


def gpu_type(gres: str, what: str = "GRES") -> str | None:
    return parsed(what, _gpu_type, gres)


def node(d: Any) -> Node:
    """A node of ``sinfo --json`` (22.05), ``scontrol show nodes --json`` (23.02+) or slurmrestd."""
    d = record(d, "a node record")
    name = text(d, "name", "node", required=True)
    what = f"node {name}"
    base, flags = state(d, "state", what, "state_flags")
    gres, used = text(d, "gres", what), text(d, "gres_used", what)
    feats = words(d, "active_features", what) or words(d, "features", what)
    return Node(name=name, state=base.lower(), flags=flags, cpus=integer(d, "cpus", what),
                cpus_alloc=integer(d, "alloc_cpus", what),
                gpus=parsed(what, gpu_count, gres), gpu_type=gpu_type(gres, what),
                gpus_used=parsed(what, gpu_indices, used) if parsed(what, gpu_count, used) else (),
                partitions=words(d, "partitions", what), features=feats,
                reservation=text(d, "reservation", what), mem=integer(d, "real_memory", what),
                mem_alloc=integer(d, "alloc_memory", what))


def _job_gpus(d: Mapping[str, Any], what: str, node_list: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    details = d.get("gres_detail") or []
    if not isinstance(details, list) or not all(isinstance(g, str) for g in details):
        raise _bad(what, "gres_detail", details, "a list of GRES strings")
    if not node_list or not details:
        return {}
    if len(details) != len(node_list):
        raise SlurmError(f"{what}: {len(details)} GRES details for {len(node_list)} nodes")
    return {n: parsed(what, gpu_indices, g) for n, g in zip(node_list, details, strict=True)
            if parsed(what, gpu_count, g)}


def job(d: Any) -> Job:
    """A job of ``squeue --json`` / ``scontrol show jobs --json`` / slurmrestd ``GET /jobs``."""
    d = record(d, "a job record")
    job_id = integer(d, "job_id", "job", default=-1)
    if job_id < 0:
        raise SlurmError("job: Slurm's answer has no 'job_id' field" if d.get("job_id") is None
                         else f"job: field 'job_id' is unset ({d['job_id']!r})")
    what = f"job {job_id}"
    base, flags = state(d, "job_state", what, None)
    state_name, more = parsed(what, _state_of, "+".join((base, *flags)))
    node_list = parsed(what, hosts, text(d, "nodes", what)) if state_name != "PENDING" else ()
    tres = text(d, "tres_per_node", what)
    limit = number(d, "time_limit", what)
    uid = integer(d, "user_id", what, default=-1)
    return Job(job_id=job_id, name=text(d, "name", what), state=state_name, flags=more,
               reason=normal_reason(text(d, "state_reason", what, "None")), comment=text(d, "comment", what),
               user=text(d, "user_name", what) or (str(uid) if uid >= 0 else ""),
               partition=text(d, "partition", what), account=text(d, "account", what),
               qos=text(d, "qos", what), nodes=integer(d, "node_count", what, default=1) or 1,
               gpus_per_node=parsed(what, gpus_requested, tres), gpu_type=gpu_type(tres, what),
               node_list=node_list, gpus_per_job=parsed(what, gpus_requested, text(d, "tres_per_job", what)),
               cpus=integer(d, "cpus", what),
               req_nodes=parsed(what, hosts, text(d, "required_nodes", what)),
               exc_nodes=parsed(what, hosts, text(d, "excluded_nodes", what)),
               gpus=_job_gpus(d, what, node_list), submit_time=epoch(d, "submit_time", what) or 0.0,
               begin_time=epoch(d, "eligible_time", what), start_time=epoch(d, "start_time", what),
               time_limit_min=None if limit is None else int(limit),
               priority=None if (prio := number(d, "priority", what)) is None else int(prio),
               dependency=text(d, "dependency", what), array_job_id=integer(d, "array_job_id", what),
               het_job_id=integer(d, "het_job_id", what), reservation=text(d, "resv_name", what),
               requeue=boolean(d, "requeue", what, default=True),
               segment_size=integer(d, "segment_size", what),
               segment_flags=_segment_flags(words(d, "flags", what)),
               # 22.05 answers "none", 25.11 ["none"]
               exclusive="none" in (w.lower() for w in words(d, "shared", what)),
               mem_per_node=integer(d, "memory_per_node", what),
               mem_per_cpu=integer(d, "memory_per_cpu", what), features=text(d, "features", what))


def parse_json(text: str | bytes) -> Any:
    """The JSON ``text`` parsed by orjson (1.5–2× faster than ``json.loads``: the 19 MB jobs answer
    of Slurm 25.11 at 16,384 GPUs in 0.11–0.17 s, not 0.19–0.24 s), with the collector paused
    (:func:`gc_paused`). Raises ``json.JSONDecodeError`` (orjson's is one) for text that is not
    JSON, also where ``json.loads`` would take NaN or Infinity, a number beyond a double (``1e400``),
    a lone surrogate, or nesting deeper than 1,024 levels; an integer beyond 64 bits becomes a float
    (which :func:`number` refuses, as it refused the exact integer). Slurm sends none of them, but
    24.05's ``sshare --json`` an ``Infinity`` (read with :func:`load_answer`'s ``nonfinite``)."""
    with gc_paused():
        return orjson.loads(text)


def load_answer(text: str | bytes, problem: str, *, nonfinite: bool = False) -> Any:
    """:func:`parse_json`, or a SlurmError ``"<problem> (<parser's reason>): <start of the text>"``.
    ``nonfinite``: an answer orjson refuses is read again by ``json.loads``, which takes ``Infinity``,
    ``-Infinity`` and ``NaN`` (24.05's ``sshare --json`` writes a fairshare ``level`` of ``Infinity``:
    its serializer/json prints non-finite doubles as json-c does; 25.05+ do not); the fields read
    refuse a non-finite number themselves."""
    try:
        return parse_json(text)
    except ValueError as exc:  # JSONDecodeError (orjson's too) and UnicodeDecodeError are ValueErrors
        if nonfinite:
            with contextlib.suppress(ValueError, RecursionError):  # not JSON to json either
                return json.loads(text)
        raise SlurmError(f"{problem} ({exc}): {text[:120]!r}") from None


def answer(data: Any, what: str) -> Mapping[str, Any]:
    """The top level of an answer: a JSON object whose ``errors`` list is empty."""
    data = record(data, f"{what} answer")
    errors = data.get("errors") or []
    if errors:
        raise SlurmError(f"{what} reported errors: {_error_text(errors)}",
                         hint="is slurmctld up and reachable from here? (`scontrol ping`)")
    return data


def _error_text(errors: Any) -> str:
    """Slurm's ``errors`` list in words: each entry's description and error, at most three, cut short."""
    if not isinstance(errors, list):
        return repr(errors)[:200]
    parts = []
    for e in errors[:3]:
        if isinstance(e, Mapping):
            words = [str(e[k]) for k in ("description", "error") if isinstance(e.get(k), (str, int)) and e.get(k) != ""]
            source = f" (in {e['source']})" if isinstance(e.get("source"), str) else ""
            parts.append((": ".join(words) or repr(dict(e)))[:200] + source[:80])
        else:
            parts.append(repr(e)[:200])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _items(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    items = data.get(key)
    if not isinstance(items, list):
        raise SlurmError(f"{what} answered without a {key!r} list (found {_kind(items)}; keys: "
                         f"{sorted(map(str, data))})")
    return items


def nodes_answer(data: Any, what: str, memo: Decoded | None = None) -> list[Node] | None:
    """Nodes of an answer with a ``nodes`` list; None for ``sinfo --json`` of 23.02+ (per-partition
    ``sinfo`` records, which group nodes and so cannot give each node's allocated GPUs). ``memo``: the
    client's :class:`Decoded` of :func:`node` (a record unchanged since its last answer not decoded again)."""
    data = answer(data, what)
    if "nodes" not in data and isinstance(data.get("sinfo"), list):
        return None
    with gc_paused():
        items = _items(data, "nodes", what)
        return memo(items) if memo is not None else [node(n) for n in items]


def data_parser(data: Any) -> tuple[int, int, int] | None:
    """The data_parser that wrote an answer (its ``meta.plugin.data_parser``, ``data_parser/v0.0.45``):
    None where the answer does not say (Slurm 22.05's openapi/v0.0.38, a record that is not an answer)."""
    meta = data.get("meta") if isinstance(data, Mapping) else None
    plugin = meta.get("plugin") if isinstance(meta, Mapping) else None
    name = plugin.get("data_parser") if isinstance(plugin, Mapping) else None
    found = _PARSER.match(name) if isinstance(name, str) else None
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def jobs_answer(data: Any, what: str, memo: Decoded | None = None) -> list[Job]:
    """Jobs of an answer with a ``jobs`` list (``memo``: as :func:`nodes_answer`'s, of :func:`job`)."""
    with gc_paused():
        items = _items(answer(data, what), "jobs", what)
        return memo(items) if memo is not None else [job(j) for j in items]


#: The job flags (``flags``) :func:`job` reads: how Slurm 25.11 lays out a ``--segment`` job's segments.
SEGMENT_FLAGS = ("SPREAD_SEGMENTS", "CONSOLIDATE_SEGMENTS")


def _segment_flags(flags: Sequence[str]) -> tuple[str, ...]:
    return tuple(f for f in flags if f in SEGMENT_FLAGS)


def _segment_flags_key(d: dict[str, Any]) -> Any:
    """The part of a job's ``flags`` that :func:`job` reads (the rest, e.g. ``BACKFILL_ATTEMPTED``, changes
    from cycle to cycle and would defeat :class:`Decoded`); the whole value when it is no list of strings."""
    flags = d.get("flags")
    if isinstance(flags, list) and all(isinstance(f, str) for f in flags):
        return list(_segment_flags(flags))
    return flags


#: The fields :func:`node` and :func:`job` read, and nothing else (tests/slurm/test_decode_memo.py checks
#: them against every recorded answer): two records alike in these decode alike.
NODE_FIELDS = ("name", "state", "state_flags", "gres", "gres_used", "active_features", "features", "cpus",
               "alloc_cpus", "partitions", "reservation", "real_memory", "alloc_memory")
JOB_FIELDS = ("job_id", "job_state", "nodes", "tres_per_node", "time_limit", "user_id", "name",
              "state_reason", "comment", "user_name", "partition", "account", "qos", "node_count",
              "tres_per_job", "cpus", "required_nodes", "excluded_nodes", "gres_detail", "submit_time",
              "eligible_time", "start_time", "priority", "dependency", "array_job_id", "het_job_id",
              "resv_name", "requeue", "segment_size", "shared", "memory_per_node", "memory_per_cpu",
              "features")


class Decoded:
    """A client's records of its last answer, decoded by ``decoder`` (:func:`node`, :func:`job`, which
    return immutable objects), kept by the ``fields`` the decoder reads: a record whose fields are the
    same as in the last answer is not decoded again. From one cycle to the next most of thousands of
    jobs are unchanged, and decoding them was most of reading them. Only the last answer's records are
    kept (bounded by it).

    The key is the fields, in ``fields``' order, serialised by orjson (an array of their values, an
    object where some are absent): exact for what :func:`parse_json` gives (``1``, ``1.0`` and ``true``
    differ, as they do to the decoder; it gives no NaN or infinity, which orjson writes as null). A
    record that is no plain dict, or does not serialise (an integer beyond 64 bits), is decoded every
    time. ``part``, when given, adds its value for the record to the key: the part of a field the
    decoder reads (a job's segment flags of its ``flags``). A record the decoder refuses raises as
    without the memo. The objects returned are the same from
    one answer to the next: nothing may change them in place (``Job.gpus`` is a dict inside a frozen
    dataclass; :func:`dataclasses.replace` makes a changed copy, as ``view_hosts.settled`` does)."""

    def __init__(self, decoder: Callable[[Any], Any], fields: tuple[str, ...],
                 part: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.decoder, self.fields, self.part = decoder, fields, part
        self._values = operator.itemgetter(*fields)
        self._last: dict[bytes, Any] = {}

    def __call__(self, records: list[Any]) -> list[Any]:
        last, kept, out = self._last, {}, []
        for d in records:
            key = self._key(d)
            found = last.get(key) if key is not None else None
            if found is None:
                found = self.decoder(d)
            if key is not None:
                kept[key] = found
            out.append(found)
        self._last = kept
        return out

    def __len__(self) -> int:
        """Records kept (those of the last answer, each distinct one once)."""
        return len(self._last)

    def _key(self, d: Any) -> bytes | None:
        if type(d) is not dict:
            return None
        try:
            part = b"" if self.part is None else orjson.dumps(self.part(d))
            try:
                return orjson.dumps(self._values(d)) + part  # every field there: an array
            except KeyError:  # some absent: an object of those present
                return orjson.dumps({f: d[f] for f in self.fields if f in d}) + part
        except orjson.JSONEncodeError:
            return None


class Decoders:
    """One client's memos of its node and job answers (:class:`Decoded`)."""

    def __init__(self) -> None:
        self.nodes = Decoded(node, NODE_FIELDS)
        self.jobs = Decoded(job, JOB_FIELDS, _segment_flags_key)
