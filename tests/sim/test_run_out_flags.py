"""``fabric sim run``: a reused --out loses a stale topology.html; --ecmp without contention is
kept (probe 2026-12-06)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fabric_hpc.cli.main import main
from fabric_hpc.placement import Request
from fabric_hpc.scheduler import Job
from fabric_hpc.sim import Contention
from fabric_hpc.topology import build, import_lingjun

LINGJUN = Path(__file__).resolve().parents[2] / "data" / "topologies" / "alibaba_lingjun2023_topo.csv"

TOPO = "leaf-spine:hosts=2"


def _run(tmp_path, trace, out, *flags):
    return main(["sim", "run", "--trace", str(trace), "--topology", TOPO, "--out", str(tmp_path / out),
                 "--no-progress", "--json", *flags])


# 5. a reused --out does not keep the previous run's topology.html


def test_reused_out_drops_a_stale_topology_report(tmp_path, capsys):
    assert _run(tmp_path, "synthetic:jobs=5", "o") == 0
    assert (tmp_path / "o" / "topology.html").exists()
    (tmp_path / "o" / "mine.txt").write_text("not fabric's")
    assert _run(tmp_path, "synthetic:jobs=5", "o", "--no-topology-report") == 0
    assert not (tmp_path / "o" / "topology.html").exists()
    assert (tmp_path / "o" / "mine.txt").exists() and (tmp_path / "o" / "results.json").exists()


# 6. (not a defect) --ecmp with --no-contention is not a no-op: a job's own flows still collide


def test_ecmp_without_contention_still_stretches_a_job_by_its_own_collisions():
    """With contention off each job is stretched by its placement alone; with ECMP that placement's
    own flows can hash onto one link (docs/scheduler.md), so the flag is kept, and recorded."""
    fab = build(import_lingjun(LINGJUN, oversubscription=2.0))
    col = fab.index.host_path[:, 0]
    tors, sizes = np.unique(col, return_counts=True)
    hosts = [int(np.flatnonzero(col == t)[0]) for t in tors[sizes >= 8][:4]]  # one host in each of 4 ToRs
    gpus = [fab.gpus[i] for i in np.flatnonzero(np.isin(fab.index.gpu_host, hosts))]
    job = Job(id="e", request=Request(nodes=4, gpus_per_node=len(gpus) // 4), submit=0, walltime=100,
              duration=100, meta={"comm_fraction": 0.5})
    spread, hashed = (Contention(fab, contention=False, ecmp=e).start("e", job, gpus)["e"]
                      for e in (False, True))
    assert spread == 1.0 and hashed > 1.1
