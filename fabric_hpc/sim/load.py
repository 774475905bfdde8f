"""``load_trace("KIND:PATH")``: one entry point for every workload source the CLI accepts.

``tiresias:FILE``, ``openb:FILE``, ``swf:FILE``, ``sacct:FILE``, ``jobcomp:FILE``, and
``synthetic[:key=value,...]`` (keys of :class:`~fabric_hpc.sim.synthetic.GangWorkload`, e.g.
``synthetic:jobs=5000,load=1.0,seed=3``). A bare path is recognised by its first line (a CSV
header by its column names, in any order, quoted or with spaces after the commas).
Bundled: ``data/traces/tiresias_60_job.csv`` and ``data/traces/alibaba_openb_pod_list_default.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import re
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim.rows import lines
from fabric_hpc.sim.slurmlog import read_jobcomp, read_sacct
from fabric_hpc.sim.synthetic import GangWorkload, gang_workload
from fabric_hpc.sim.swf import read_swf
from fabric_hpc.sim.traces import Trace, _open, read_openb, read_tiresias, separator_error

READERS = {"tiresias": read_tiresias, "openb": read_openb, "swf": read_swf, "sacct": read_sacct,
           "jobcomp": read_jobcomp}
KINDS = (*READERS, "synthetic")


def _header(first: str) -> set[str]:
    """The column names of a CSV header line as the CSV readers see them (quotes, spaces after commas)."""
    try:
        return {c.strip() for c in next(csv.reader([first], skipinitialspace=True), [])}
    except csv.Error:
        return set()


def _sniff(path: Path) -> str:
    first = next((ln.strip() for ln in lines(path) if ln.strip()), "")
    cols = _header(first)
    if {"job_id", "num_gpu"} <= cols:  # by the columns, in any order, quoted or not
        return "tiresias"
    if {"name", "qos"} <= cols:
        return "openb"
    if first.startswith("JobId="):
        return "jobcomp"
    if "|" in first and "jobid" in first.lower():
        return "sacct"
    if first.startswith(";") or (first and first.split()[0].isascii() and first.split()[0].isdigit()):
        return "swf"
    if not first:
        raise ConfigError(f"{path}: the trace file is empty", hint="give a trace with a header and jobs (docs/scheduler.md)")
    if wrong := separator_error(path, first):
        raise wrong
    raise ConfigError(f"{path}: cannot tell the trace format from its first line ({first[:60]!r})",
                      hint="it is none of the formats read here (tiresias, openb, swf, sacct, jobcomp); "
                           "convert it to the minimal Tiresias CSV, header job_id,num_gpu,submit_time,"
                           "duration (times in seconds): docs/scheduler.md, 'Bringing your own trace', has "
                           "recipes for Helios, Philly and PAI")


_EXAMPLES = {"tp": 8, "pp": 2}  # a whole-number key's example where its default (1: none) says little


def _synthetic(params: str, fabric_defaults: dict[str, object] | None = None) -> Trace:
    """``fabric_defaults`` (``cluster_gpus``, ``gpus_per_host``, ``nvlink_hosts`` of the fabric
    replayed on: :func:`~fabric_hpc.sim.synthetic.fabric_sizes`) apply where ``params`` do not set
    them, so ``load`` is the load on that fabric and gangs (and their tp groups) fit it."""
    fields = {f.name: f for f in dataclasses.fields(GangWorkload)}
    kw: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in params.split(","))):
        key, sep, val = part.partition("=")
        if key in kw:
            raise ConfigError(f"synthetic: {key!r} is given more than once", hint="give each key once")
        if not sep or key not in fields or fields[key].type not in ("int", "float"):
            raise ConfigError(f"synthetic: bad parameter {part!r}",
                              hint=f"scalar keys: {', '.join(k for k, f in fields.items() if f.type in ('int', 'float'))}")
        try:
            if len(val) > 40 or not val.isascii() or "_" in val:  # int() also reads '５' and '1_0'
                raise ValueError
            kw[key] = int(val) if fields[key].type == "int" else float(val)
        except ValueError:
            if fields[key].type == "int":
                raise ConfigError(f"synthetic: {key}={val!r} must be a whole number",
                                  hint=f"e.g. synthetic:{key}={_EXAMPLES.get(key, fields[key].default)}") from None
            raise ConfigError(f"synthetic: {key}={val!r} is not a number") from None
    spec = GangWorkload(**{**(fabric_defaults or {}), **kw})  # type: ignore[arg-type]
    return Trace(gang_workload(spec), "synthetic:" + (params or "defaults"))


#: Reader keywords whose ``fabric sim run`` flag is not the keyword with dashes.
_FLAG_OF = {"queue_tiers": "--swf-queue-tier"}


def _flags(names) -> str:  # noqa: ANN001 - the CLI flags (and keyword names) of reader options
    return ", ".join(_FLAG_OF.get(n, f"--{n.replace('_', '-')}") for n in sorted(names))


def trace_path(ref: str) -> str | None:
    """The file a trace reference reads (``KIND:PATH`` or a bare path); None for a synthetic workload."""
    kind, sep, rest = ref.partition(":")
    if kind == "synthetic":
        return None
    return rest if sep and kind in READERS else ref


def load_trace(ref: str, *, fabric_defaults: dict[str, object] | None = None, limit: int | None = None,
               **options: object) -> Trace:
    """The jobs of ``ref``; ``options`` go to the file reader (``time_scale``, ``gpus_per_host``,
    ...), and one it does not take is a ConfigError naming the kinds that do. ``limit``: only the
    N earliest jobs by submit time; a file reader still checks every row but keeps only N jobs
    (memory O(N), not O(file)), so a bad row anywhere is still an error."""
    if not isinstance(ref, str):
        raise ConfigError(f"a trace reference is a string such as 'tiresias:FILE' or 'synthetic', "
                          f"not {type(ref).__name__}", hint="fabric docs scheduler lists the trace kinds")
    kind, sep, rest = ref.partition(":")
    if kind == "synthetic":
        if options:
            raise ConfigError(f"synthetic traces take no {_flags(options)}",
                              hint="set the workload's own keys instead (e.g. synthetic:load=0.8,gpus_per_host=4)")
        trace = _synthetic(rest, fabric_defaults)
        return trace if limit is None else Trace(list(trace)[:limit], trace.name)
    path: str | Path
    if sep and kind in READERS:
        if not rest.strip():
            raise ConfigError(f"trace {ref!r} names no file after '{kind}:'", hint=f"give it as {kind}:PATH")
        path = rest
    else:
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", kind) and not Path(ref).exists():  # a typo
            raise ConfigError(f"unknown trace kind {kind!r} in {ref[:80]!r}",
                              hint=f"kinds: {', '.join(KINDS)} (KIND:PATH, synthetic[:key=value,...]), "
                                   "or a bare path")
        path = _open(ref)
        kind = _sniff(path)
    reader = READERS[kind]
    accepted = inspect.signature(reader).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        takers = [k for k, r in READERS.items() if all(o in inspect.signature(r).parameters for o in unknown)]
        raise ConfigError(f"{kind} traces take no {_flags(unknown)}",
                          hint=f"it applies to {', '.join(takers) or 'no'} traces")
    if limit is not None:
        options["limit"] = limit
    return reader(path, **options)  # type: ignore[operator]
