"""``load_trace("KIND:PATH")``: one entry point for every workload source the CLI accepts.

``tiresias:FILE``, ``openb:FILE``, ``swf:FILE``, ``sacct:FILE``, ``jobcomp:FILE``, and
``synthetic[:key=value,...]`` (keys of :class:`~fabric_hpc.sim.synthetic.GangWorkload`, e.g.
``synthetic:jobs=5000,load=1.0,seed=3``). A bare path is recognised by its first line.
Bundled: ``data/traces/tiresias_60_job.csv`` and ``data/traces/alibaba_openb_pod_list_default.csv``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim.slurmlog import read_jobcomp, read_sacct
from fabric_hpc.sim.synthetic import GangWorkload, gang_workload
from fabric_hpc.sim.traces import Trace, _lines, _open, read_openb, read_swf, read_tiresias

READERS = {"tiresias": read_tiresias, "openb": read_openb, "swf": read_swf, "sacct": read_sacct,
           "jobcomp": read_jobcomp}
KINDS = (*READERS, "synthetic")


def _sniff(path: Path) -> str:
    first = next((ln.strip() for ln in _lines(path) if ln.strip()), "")
    if first.startswith("job_id,num_gpu"):
        return "tiresias"
    if first.startswith("name,") and "qos" in first:
        return "openb"
    if first.startswith("JobId="):
        return "jobcomp"
    if "|" in first and "jobid" in first.lower():
        return "sacct"
    if first.startswith(";") or (first and first.split()[0].isdigit()):
        return "swf"
    raise ConfigError(f"{path}: cannot tell the trace format from its first line",
                      hint=f"prefix the path with the kind: {', '.join(READERS)} (e.g. openb:{path})")


def _synthetic(params: str) -> Trace:
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
            kw[key] = int(val) if fields[key].type == "int" else float(val)
            if len(val) > 40:
                raise ValueError
        except ValueError:
            raise ConfigError(f"synthetic: {key}={val!r} is not a number") from None
    spec = GangWorkload(**kw)  # type: ignore[arg-type]
    return Trace(gang_workload(spec), "synthetic:" + (params or "defaults"))


def load_trace(ref: str, **options: object) -> Trace:
    kind, sep, rest = ref.partition(":")
    if kind == "synthetic":
        return _synthetic(rest)
    if sep and kind in READERS:
        return READERS[kind](rest, **options)  # type: ignore[operator]
    path = _open(ref)
    return READERS[_sniff(path)](path, **options)  # type: ignore[operator]
