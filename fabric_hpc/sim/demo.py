"""Replay a workload with several policies and write the comparison (the library behind ``make demo``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler.policies import make_policy
from fabric_hpc.sim.engine import Simulator
from fabric_hpc.sim.report import comparison_metrics, comparison_rows, write_html
from fabric_hpc.sim.results import write_results
from fabric_hpc.sim.synthetic import GangWorkload, gang_workload
from fabric_hpc.sim.traces import Trace
from fabric_hpc.topology import Fabric

#: The bundled demo workload: 1,200 gangs (1-128 GPUs) at offered load 1.5 on the 1,024-GPU SuperPOD.
DEMO_WORKLOAD = GangWorkload(jobs=1200, cluster_gpus=1024, load=1.5, seed=7)


def demo_workload(fab: Fabric) -> GangWorkload:
    """The demo's workload sized to ``fab``: its GPU count and its largest host (the default
    SuperPOD gets :data:`DEMO_WORKLOAD` itself)."""
    sizes = np.bincount(fab.index.gpu_host, minlength=len(fab.hosts))
    return replace(DEMO_WORKLOAD, cluster_gpus=max(len(fab.gpus), 1), gpus_per_host=max(int(sizes.max(initial=0)), 1))


def compare(fab: Fabric, jobs: list[Job], out_dir: str | os.PathLike[str], *, policies=("slurm", "fabric"),
            trace_name: str = "", progress: bool = False, topology_report: bool = True,
            policy_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run each policy on ``jobs``; write ``DIR/<policy>/results.json`` and ``DIR/report.html``."""
    out = Path(out_dir)
    results, names = [], []
    for name in policies:
        policy = make_policy(name, **(policy_options or {}).get(name, {}))
        res = Simulator(fab, policy, jobs, progress=progress).run()
        results.append(write_results(res, out / name, trace=trace_name, topology_report=topology_report,
                                     config={"policy": name, "fabric": fab.name}))
        names.append(name)
    links = {f"{n}: topology at its busiest moment": f"{n}/topology.html" for n in names} if topology_report else {}
    report = write_html(results, out / "report.html", names=names, links=links,
                        title=f"fabric-hpc scheduler comparison on {fab.name}")
    return {"policies": names, "columns": ["metric", *names], "rows": comparison_rows(results),
            "metrics": comparison_metrics(results),
            "summaries": {n: r["summary"] for n, r in zip(names, results, strict=True)},
            "report": str(report), "out_dir": str(out)}


def demo_compare(out_dir: str | os.PathLike[str], *, fabric: Fabric | None = None, trace: str | list[Job] | None = None,
                 policies=("slurm", "fabric"), progress: bool = False) -> dict[str, Any]:
    """The demo: replay a bundled workload on the default cluster (DGX H100 SuperPOD, 4 SUs) with the
    Slurm-like baseline and fabric's policy; write the HTML report with the topology report of each
    policy's busiest moment; return the comparison table (``rows``: [metric, slurm, fabric])."""
    from fabric_hpc.topology import open_fabric

    fab = fabric or open_fabric()
    if trace is None:
        spec = DEMO_WORKLOAD if fabric is None else demo_workload(fab)
        jobs: list[Job] = gang_workload(spec)
        name = f"synthetic gang workload ({spec.jobs} jobs, load {spec.load}, seed {spec.seed})"
    elif isinstance(trace, str):
        from fabric_hpc.sim.load import load_trace

        jobs = load_trace(trace)
        name = jobs.name or trace
    else:
        jobs, name = list(trace), (trace.name or "jobs") if isinstance(trace, Trace) else "jobs"
    return compare(fab, jobs, out_dir, policies=policies, trace_name=name, progress=progress)
