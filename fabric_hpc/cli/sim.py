"""``fabric sim``: replay a workload through a scheduling policy and compare policies.

``fabric sim run --trace KIND:FILE --topology T --policy slurm|fabric --out DIR`` replays and writes
``DIR/results.json`` (+ ``state.json``, ``topology.html``); ``fabric sim compare DIR...`` prints the
side-by-side table and writes ``report.html`` next to the first; ``fabric sim demo`` runs the bundled
comparison.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fabric_hpc.cli.main import one_line
from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.cli.params import FiniteFloat, OutputDir, OutputFile
from fabric_hpc.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from fabric_hpc.topology import Fabric


@click.group()
def group() -> None:
    """Trace-driven cluster simulator: run (replay workloads through scheduling policies), compare,
    demo."""


@group.command("run")
@click.option("--trace", required=True, help="KIND:FILE (tiresias, openb, swf, sacct, jobcomp) or "
              "synthetic[:jobs=N,load=X,seed=S,tp=K,pp=P,gpus_per_host=G] (tp: tensor-parallel groups of "
              "K GPUs, each in one NVLink domain; pp: P pipeline stages; docs/scheduler.md); a bare file "
              "is recognised by its first line.")
@click.option("--topology", "-t", default=None, help="Fabric YAML or generator (superpod:sus=4); default: SuperPOD 4 SU.")
@click.option("--policy", type=click.Choice(["slurm", "fabric"]), default="fabric", show_default=True)
@click.option("--placement", default=None, help="Override the placer (greedy, cpsat, slurm-tree, slurm-block).")
@click.option("--backfill", type=click.Choice(["easy", "conservative", "none"]), default=None,
              help="fabric policy only: backfill mode (default easy). conservative reserves for up to "
                   "100 waiting jobs each pass and grows faster than linearly with the queue (800 "
                   "overloaded jobs on 8 NVL72 racks: ~146 s vs easy's ~3 s; docs/scheduler.md).")
@click.option("--no-preemption", is_flag=True, help="fabric policy only: no gang preemption of spot jobs.")
@click.option("--preempt-benefit-ratio", type=FiniteFloat(0, 1e6), default=None,
              help="fabric policy only: preempt when the waiting avoided is at least this many times the "
                   "victims' GPU-hours lost (default 20.0; higher: fewer preemptions).")
@click.option("--out", "out_dir", required=True, type=OutputDir(), help="Results directory.")
@click.option("--time-scale", type=FiniteFloat(0, 1e6, lo_open=True), default=None,
              help="Multiply trace times (tiresias/openb/swf).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Replay only the N earliest jobs (by submit time); every row is still checked.")
@click.option("--gpus-per-host", type=click.IntRange(1, 1024), default=None,
              help="Host size the trace readers cut gangs into (default: the fabric's largest host).")
@click.option("--procs-per-gpu", default=None, metavar="N",
              help="swf traces only: CPU processors that stand for one GPU (GPUs = ⌈processors / N⌉; "
                   "default 1).")
@click.option("--swf-queue-tier", default=None, metavar="Q=TIER,...",
              help="swf traces only: SWF queue numbers (field 15) to tiers, e.g. 1=high,2=spot "
                   "(other queues: normal).")
@click.option("--gpus-per-node", default=None, metavar="N",
              help="sacct/jobcomp only: GPUs of each node of a job whose record gives no GPU count "
                   "(default: --gpus-per-host, i.e. the fabric's largest host).")
@click.option("--contention/--no-contention", default=True, show_default=True,
              help="Slow jobs whose network links other running jobs share (max-min fair share); off: each "
                   "job is stretched by its placement alone (the contention ablation, docs/scheduler.md).")
@click.option("--ecmp", is_flag=True,
              help="Route each flow by ECMP hashing (one uplink per flow, as on Ethernet) instead of "
                   "perfectly spread uplinks (InfiniBand adaptive routing).")
@click.option("--strict", is_flag=True,
              help="Refuse (exit 3) a workload with jobs that can never fit the fabric, instead of "
                   "counting them as rejected.")
@click.option("--no-topology-report", is_flag=True, help="Skip the topology report of the busiest moment.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@json_option
def run_cmd(trace: str, topology: str | None, policy: str, placement: str | None, backfill: str | None,
            no_preemption: bool, preempt_benefit_ratio: float | None, out_dir: str,
            time_scale: float | None, limit: int | None, gpus_per_host: int | None, procs_per_gpu: str | None,
            swf_queue_tier: str | None, gpus_per_node: str | None, contention: bool,
            ecmp: bool, strict: bool, no_topology_report: bool, progress: bool, as_json: bool) -> None:
    """Replay a workload through one policy."""
    import numpy as np

    from fabric_hpc.scheduler import make_policy
    from fabric_hpc.sim import Contention, Simulator, write_results
    from fabric_hpc.topology import open_fabric

    _outputs_are_not_inputs(out_dir, trace, topology, topology_report=not no_topology_report)
    fab = open_fabric(topology)
    if not len(fab.gpus):
        raise ConfigError(f"fabric {fab.name!r} has no GPUs: no job of a trace could ever run on it",
                          hint="give --topology a fabric whose host types have gpus > 0")
    sizes = np.bincount(fab.index.gpu_host, minlength=len(fab.hosts))
    options = _trace_options(trace, fab, sizes, time_scale, gpus_per_host)
    kind_options = _kind_options(procs_per_gpu, swf_queue_tier, gpus_per_node)
    options.update(kind_options)
    jobs, name = _workload(trace, fab, sizes, options, limit, strict)
    trace_file = jobs.file_identity()  # the file's path and content hash, so compare tells files apart
    kwargs = _policy_kwargs(policy, placement, backfill, no_preemption, preempt_benefit_ratio)
    pol = make_policy(policy, **kwargs)
    slowdown = Contention(fab, contention=contention, ecmp=ecmp)
    _writable_out(out_dir)  # now, not after a replay of hours
    res = Simulator(fab, pol, jobs, slowdown=slowdown, progress=progress and not as_json).run()
    # everything that changes the workload or the model besides the policy, so compare can warn
    workload = {"time_scale": time_scale or 1.0, "limit": limit,
                "gpus_per_host": options.get("gpus_per_host"), "contention": contention, "ecmp": ecmp,
                **dict.fromkeys(("procs_per_gpu", "queue_tiers", "gpus_per_node")),
                **{k: (",".join(f"{q}={t}" for q, t in v.items()) if isinstance(v, dict) else v)
                   for k, v in kind_options.items()}}
    data = write_results(res, out_dir, trace=name, topology_report=not no_topology_report,
                         trace_file=trace_file,
                         config={"policy": policy, "fabric": fab.name, **kwargs, **workload})
    s = data["summary"]
    render(as_json, s, lambda con: con.print(table(f"{policy} on {fab.name}: {name}", ["metric", "value"],
                                                   [[k, _fmt(v)] for k, v in s.items()])))


def _workload(trace: str, fab: Fabric, sizes: np.ndarray, options: dict, limit: int | None,
              strict: bool) -> tuple[list, str]:
    """(the jobs of ``trace``, its name): skipped rows and jobs that can never fit said as notes
    (``strict``: the latter refused)."""
    from fabric_hpc.sim import load_trace
    from fabric_hpc.sim.engine import never_fits

    jobs = load_trace(trace, limit=limit, **options)  # the N earliest, O(N) memory (every row checked)
    name = jobs.name or trace
    for line in jobs.notes():  # rows skipped, one line per reason: said, not hidden
        click.echo(one_line(f"note: {line}"), err=True)
    if not len(jobs):
        skipped = f" ({jobs.skipped} row(s) skipped)" if jobs.skipped else ""
        raise ConfigError(f"{name} holds no GPU job to replay{skipped}",
                          hint="check the trace's GPU and duration columns (docs/scheduler.md, traces)")
    misfits = [(j.id, r) for j in jobs if (r := never_fits(j, fab, sizes)) is not None]
    if misfits:
        msg = (f"{len(misfits)} of {len(jobs)} job(s) can never fit {fab.name} "
               f"(e.g. {misfits[0][0]}: {misfits[0][1]})")
        if strict:
            raise ConfigError(msg, hint="use a larger fabric, --gpus-per-host matching the fabric, or drop "
                                        "--strict to count them as rejected")
        click.echo(one_line(f"note: {msg}; counted as rejected, not in JCT or slowdown"), err=True)
    return jobs, name


def _policy_kwargs(policy: str, placement: str | None, backfill: str | None, no_preemption: bool,
                   preempt_benefit_ratio: float | None) -> dict:
    """make_policy's keyword arguments from the flags; the fabric-only ones refused with the baseline."""
    kwargs: dict = {}
    if placement:
        kwargs["placement"] = placement
    if no_preemption and preempt_benefit_ratio is not None:
        raise ConfigError("--no-preemption and --preempt-benefit-ratio contradict each other",
                          hint="give one: no preemption at all, or preemption when it pays this much")
    fabric_only = {"backfill": backfill, "preemption": False if no_preemption else None,
                   "preempt_benefit_ratio": preempt_benefit_ratio}
    for key, value in fabric_only.items():
        if value is None:
            continue
        if policy != "fabric":
            flag = {"preemption": "--no-preemption"}.get(key, "--" + key.replace("_", "-"))
            raise ConfigError(f"{flag} applies to --policy fabric only (the baseline is EASY backfill "
                              "without preemption, like a default Slurm)")
        kwargs[key] = value
    return kwargs


@group.command("compare")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--report", "report_path", default=None, type=OutputFile(what="report"),
              help="HTML report to write (default: report.html in the parent of the first DIR).")
@json_option
def compare_cmd(dirs: tuple[str, ...], report_path: str | None, as_json: bool) -> None:
    """Compare result directories side by side (table + HTML report)."""
    from fabric_hpc.inputs import distinct_outputs, output_path
    from fabric_hpc.sim import comparison_metrics, comparison_rows, load_results, write_html
    from fabric_hpc.sim.report import comparison_warnings
    from fabric_hpc.sim.results import RUN_FILES

    results = [load_results(d) for d in dirs]
    names = [Path(d).name or d for d in dirs]
    if len(set(names)) < len(names):  # a/run and b/run: name the columns by their paths
        names = [os.path.normpath(d) for d in dirs]
    report = output_path(report_path if report_path else Path(dirs[0]).resolve().parent / "report.html",
                         what="--report")
    run_files = {f"{d}/{f}": Path(d) / f for d in dirs for f in RUN_FILES}
    distinct_outputs({"--report": report}, run_files)
    # also one the run did not write (topology.html of a --no-topology-report run): a later run would
    # replace the page, and the page would link to itself as that run's topology report
    named = next((n for n, p in run_files.items() if p.resolve() == report.resolve()), None)
    if named is not None:
        raise ConfigError(f"--report {str(report)!r} is {named}, a file `fabric sim run` writes there: "
                          "a later run would overwrite it", hint="give --report another file name")
    warnings = _duplicates(dirs) + comparison_warnings(results, names)  # on the terminal and on the page
    write_html(results, report, names=names, warnings=warnings, links=_topology_links(dirs, names, report))
    rows = comparison_rows(results)
    render(as_json, {"columns": ["metric", *names], "rows": rows, "metrics": comparison_metrics(results),
                     "runs": names, "report": str(report), "warnings": warnings},
           lambda con: (con.print(table("policy comparison", ["metric", *names], rows)),
                        [con.print(f"warning: {w}", markup=False) for w in warnings],
                        con.print(f"report: {report}")))


def _outputs_are_not_inputs(out_dir: str, trace: str, topology: str | None, *, topology_report: bool) -> None:
    """Refuse, before the replay, an --out whose files would overwrite the trace or the fabric read, or
    hold a directory (or FIFO, device) where a run writes a file (it would fail after the replay)."""
    from fabric_hpc.inputs import distinct_outputs, output_path
    from fabric_hpc.sim.load import trace_path
    from fabric_hpc.sim.results import RUN_FILES

    written = RUN_FILES if topology_report else tuple(f for f in RUN_FILES if f != "topology.html")
    outputs = {f"--out {f}": Path(out_dir) / f for f in written}
    try:
        for name, path in outputs.items():
            if path.parent.is_dir():  # else the run creates --out
                output_path(path, what=name)
        distinct_outputs(outputs, {"--trace": trace_path(trace), "--topology": topology})
    except ConfigError as exc:
        raise ConfigError(exc.message, hint=f"give --out another directory (a run writes "
                                            f"{', '.join(written)} there)") from None


def _writable_out(out_dir: str) -> None:
    """Create ``--out`` (its parent exists: OutputDir) and check this user may write it, so that a
    directory that cannot be written is said before the replay rather than after it."""
    import errno

    from fabric_hpc.inputs import os_error

    out = Path(out_dir)
    try:
        out.mkdir(exist_ok=True)
        if os.statvfs(out).f_flag & os.ST_RDONLY:  # root's os.access says yes there too
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), out_dir)
        if not os.access(out, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), out_dir)
    except OSError as exc:
        raise os_error(exc, "--out", out_dir) from None


def _trace_options(trace: str, fab: Fabric, sizes: np.ndarray, time_scale: float | None,
                   gpus_per_host: int | None) -> dict:
    """``load_trace``'s options: trace files are cut into hosts of ``--gpus-per-host`` (default the
    fabric's largest host); a synthetic workload is sized to the fabric (GPUs, hosts, NVLink domains)."""
    opts: dict = {"time_scale": time_scale} if time_scale is not None else {}
    if trace.partition(":")[0] != "synthetic":  # as load_trace tells them apart (synthetic_jobs.csv is a file)
        opts["gpus_per_host"] = gpus_per_host or max(int(sizes.max(initial=0)), 1)
    elif gpus_per_host is not None:
        raise ConfigError("--gpus-per-host applies to trace files; give synthetic:gpus_per_host=N instead")
    else:  # sized to this fabric unless the reference says otherwise
        from fabric_hpc.sim.synthetic import fabric_sizes

        opts["fabric_defaults"] = fabric_sizes(fab)
    return opts


def _kind_options(procs_per_gpu: str | None, swf_queue_tier: str | None,
                  gpus_per_node: str | None) -> dict:
    """The reader options of one trace kind (``load_trace`` refuses them for the other kinds)."""
    from fabric_hpc.sim.swf import parse_queue_tiers

    opts: dict = {}
    for key, flag, text in (("procs_per_gpu", "--procs-per-gpu", procs_per_gpu),
                            ("gpus_per_node", "--gpus-per-node", gpus_per_node)):
        if text is None:
            continue
        value = text.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            example = 32 if key == "procs_per_gpu" else 4
            raise ConfigError(f"{flag} {text[:40]!r} is not a whole number",
                              hint=f"give {flag} as digits, e.g. {flag} {example}")
        opts[key] = int(value)
    if swf_queue_tier is not None:
        opts["queue_tiers"] = parse_queue_tiers(swf_queue_tier)
    return opts


def _duplicates(dirs: tuple[str, ...]) -> list[str]:
    """One warning per run directory given more than once (by its real path)."""
    seen: dict[str, list[str]] = {}
    for d in dirs:
        seen.setdefault(os.path.realpath(d), []).append(d)
    return [f"the same run directory was given {len(given)} times: {', '.join(given)}"
            for given in seen.values() if len(given) > 1]


def _topology_links(dirs: tuple[str, ...], names: list[str], report: Path) -> dict[str, str]:
    """Each run's topology report that exists, relative to the comparison page."""
    out = {}
    for d, n in zip(dirs, names, strict=True):
        page = Path(d) / "topology.html"
        if page.is_file() and n not in out:
            out[n] = Path(os.path.relpath(page.resolve(), report.resolve().parent)).as_posix()
    return out


@group.command("demo")
@click.option("--out", "out_dir", default="demo-out/sim", show_default=True, type=OutputDir(parents=True))
@json_option
def demo_cmd(out_dir: str, as_json: bool) -> None:
    """Replay the bundled gang workload on the default SuperPOD with the Slurm-like baseline and fabric."""
    from fabric_hpc.scheduler import demo_compare

    out = demo_compare(out_dir, progress=not as_json)
    render(as_json, {k: v for k, v in out.items() if k != "summaries"},
           lambda con: (con.print(table("Slurm-like baseline vs fabric", out["columns"], out["rows"])),
                        con.print(f"report: {out['report']}")))


def _fmt(v: object) -> str:
    """A summary value for the table: floats to 4 significant digits, mappings as ``k: v, ...``."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) or "–"
    if v is None or (isinstance(v, float) and not math.isfinite(v)):  # undefined (over no jobs)
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
