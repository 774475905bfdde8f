"""The simulator: a hand-worked schedule, walltime kills, preemption and requeue, determinism."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler import (Backfill, GangPreemption, MultifactorPriority, Scheduler, SolverPlacer,
                                  fabric_policy, slurm_policy)
from fabric_hpc.sim import Contention, Simulator, gang_workload, load_results, summarize, write_html, write_results
from tests.scheduler.helpers import fabric, job


def _fifo() -> Scheduler:
    prio = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    return Scheduler("fifo", prio, SolverPlacer("greedy"), Backfill.easy())


def _by_id(result):
    return {r.job.id: r for r in result.records}


def test_hand_worked_schedule():
    fab = fabric(2, 2)  # 2 hosts x 8 GPUs, one leaf
    jobs = [job("j1", 2, submit=0, wall=100),             # 0 -> 100
            job("j2", 1, submit=10, wall=50),             # waits for j1: 100 -> 150
            job("j3", 1, submit=20, wall=40, dur=30),     # 100 -> 130
            job("j4", 1, submit=25, wall=60, dur=100)]    # needs 100 s, killed at its 60 s limit: 130 -> 190
    res = _by_id(Simulator(fab, _fifo(), jobs).run())
    assert [(res[j].first_start, res[j].end, res[j].status) for j in ("j1", "j2", "j3", "j4")] == [
        (0, 100, "done"), (100, 150, "done"), (100, 130, "done"), (130, 190, "timeout")]


def test_preempted_gang_is_requeued_and_pays_restore():
    fab = fabric(2, 2)
    jobs = [job("spot", 2, submit=0, wall=10_000, dur=1000, tier="spot", ckpt=300),
            job("hi", 2, submit=700, wall=100, tier="high")]
    pol = Scheduler("p", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(), GangPreemption(restore_s=50))
    res = _by_id(Simulator(fab, pol, jobs, restore_s=50).run())
    assert res["hi"].first_start == 700 and res["hi"].end == 800
    spot = res["spot"]
    assert spot.preemptions == 1
    # saved 600 s of work at the checkpoint at 600; restarts at 800, restores 50 s, runs 400 s more
    assert spot.end == 800 + 50 + 400
    assert spot.gpu_hours_lost == pytest.approx(16 * 100 / 3600)


def test_slowdown_stretches_scattered_gangs():
    fab = fabric(4, 2)
    model = Contention(fab)
    from fabric_hpc.placement import ClusterState, place

    st = ClusterState(fab)
    st.allocate("x", [g for h in ("n1", "n2", "n3", "n4") for g in fab.host_gpus(h)[:4]])
    compact = place(fab, ClusterState(fab), "nodes=2,gpus=8", solver="greedy")
    scattered = place(fab, st, "gpus=8", solver="greedy")  # 4 free per host: over two hosts' NICs
    assert model.start("c", job("c", 2), compact.gpus) == {"c": 1.0}
    assert model.start("s", job("s", 1), scattered.gpus)["s"] > 1.2


def test_same_inputs_same_outputs(tmp_path):
    fab = fabric(16, 4)
    jobs = gang_workload(jobs=120, cluster_gpus=128, seed=5, load=1.2,
                         size_mix={1: 0.4, 4: 0.2, 8: 0.2, 16: 0.1, 32: 0.1})
    a = [r.__dict__ | {"job": r.job.id} for r in Simulator(fab, fabric_policy(), jobs).run().records]
    b = [r.__dict__ | {"job": r.job.id} for r in Simulator(fab, fabric_policy(), jobs).run().records]
    assert a == b


def test_results_files_and_report(tmp_path, capsys):
    fab = fabric(8, 4)
    jobs = gang_workload(jobs=60, cluster_gpus=64, seed=2, size_mix={1: 0.5, 8: 0.3, 16: 0.2})
    outs = []
    for pol in (slurm_policy(), fabric_policy()):
        res = Simulator(fab, pol, jobs).run()
        write_results(res, tmp_path / pol.name, trace="synthetic", topology_report=True)
        outs.append(load_results(tmp_path / pol.name))
        assert (tmp_path / pol.name / "topology.html").stat().st_size > 1000
        assert json.loads((tmp_path / pol.name / "state.json").read_text())["version"] == 1
    html = write_html(outs, tmp_path / "report.html").read_text()
    assert "data:image/png;base64" in html and "mean JCT" in html
    s = outs[0]["summary"]
    assert s["finished"] == 60 and 0 < s["gpu_utilisation"] <= 1 and s["jain_accounts"] <= 1
    # compare refuses a report over its own inputs, and hand-edited files with the wrong shapes
    from fabric_hpc.cli.main import main

    dirs = [str(tmp_path / "slurm"), str(tmp_path / "fabric")]
    before = (tmp_path / "fabric" / "results.json").read_bytes()
    assert main(["sim", "compare", *dirs, "--report", str(tmp_path / "fabric" / "results.json")]) == 3
    assert (tmp_path / "fabric" / "results.json").read_bytes() == before
    err = capsys.readouterr().err  # the input's path once (it was given twice: as its name and its path)
    assert err.count(str(tmp_path / "fabric" / "results.json")) == 2 and "is the input" in err
    assert main(["sim", "compare", *dirs, "--report", str(tmp_path / "no" / "r.html")]) == 3
    assert not (tmp_path / "no").exists()
    # two runs in directories of the same name get their paths as column names
    import shutil

    for parent in ("a", "b"):
        shutil.copytree(tmp_path / "slurm", tmp_path / parent / "run")
    capsys.readouterr()
    assert main(["sim", "compare", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "--json",
                 "--report", str(tmp_path / "r.html")]) == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert columns == ["metric", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    good = json.loads(before)
    for edit in ({"jct": "x"}, {"summary": [1, 2]}, {"timeline": None}, {"wait_by_tier": {"normal": "x"}},
                 {"summary": {**good["summary"], "mean_jct_s": "fast"}}, {"summary": {**good["summary"], "fabric": 7}}):
        (tmp_path / "fabric" / "results.json").write_text(json.dumps({**good, **edit}))
        with pytest.raises(ConfigError, match="results.json: "):
            load_results(tmp_path / "fabric")


def test_metrics_on_a_known_schedule():
    fab = fabric(2, 2)
    jobs = [job("j1", 2, submit=0, wall=100), job("j2", 2, submit=0, wall=100)]
    s = summarize(Simulator(fab, _fifo(), jobs).run())
    assert s["mean_jct_s"] == 150 and s["p50_wait_s"] == 50 and s["gpu_utilisation"] == 1.0
    assert s["mean_bounded_slowdown"] == 1.5
    single = summarize(Simulator(fab, _fifo(), [job("j3", 1, submit=0, wall=100)]).run())
    assert single["multi_host_gangs"] == 0  # spans are undefined, not 0
    assert single["mean_domains_spanned"] is None and single["mean_hosts_spanned"] is None


def test_demo_compare_plumbing(tmp_path):
    from fabric_hpc.scheduler import demo_compare

    fab = fabric(8, 4)
    jobs = gang_workload(jobs=40, cluster_gpus=64, seed=3, size_mix={1: 0.5, 8: 0.3, 16: 0.2})
    out = demo_compare(tmp_path, fabric=fab, trace=jobs)
    assert out["columns"] == ["metric", "slurm", "fabric"]
    assert {r[0] for r in out["rows"]} >= {"mean JCT (h)", "Jain's index across accounts"}
    assert out["summaries"]["fabric"]["finished"] == 40
    html = (tmp_path / "report.html").read_text()
    assert "slurm/topology.html" in html and (tmp_path / "fabric" / "topology.html").exists()


def test_whole_host_gang_without_gpu_count_starts():
    """`nodes=4,whole_hosts` (no gpus_per_node) on an idle fabric: the compact-wait constraint was
    sized from 0 GPUs (one leaf of two hosts) and the gang never started."""
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job, fabric_policy
    from fabric_hpc.sim import Simulator
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("leaf-spine:hosts=4,hosts_per_leaf=2")
    res = Simulator(fab, fabric_policy(), [Job("x", Request(nodes=4, whole_hosts=True), 0.0, 1000.0, duration=50)]).run()
    (rec,) = res.records
    assert rec.status == "done" and rec.first_start == 0.0 and rec.hosts == 4 and rec.gpus == 32
    from fabric_hpc.sim.metrics import job_rows

    assert job_rows(res)[0]["gpus"] == 32  # what it held, not the request's unknown 0


def test_utilisation_runs_to_the_last_job_end():
    """32 GPUs busy for 50 s and 8 for 1 s of 51 s: 0.985, not diluted by a backfill wake-up at 60 s
    or by a job arriving at 10,000 s that can never fit."""
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job, fabric_policy
    from fabric_hpc.sim import Simulator, summarize
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("leaf-spine:hosts=4,hosts_per_leaf=2")
    jobs = [Job("a", Request(gpus=32), 0.0, 100.0, duration=50.0), Job("b", Request(gpus=8), 5.0, 100.0, duration=1.0),
            Job("big", Request(gpus=64), 10_000.0, 100.0, duration=1.0)]
    s = summarize(Simulator(fab, fabric_policy(), jobs).run())
    assert s["rejected"] == 1 and s["gpu_utilisation"] == pytest.approx((32 * 50 + 8 * 1) / (32 * 51))


def test_results_jct_is_over_the_jobs_the_summary_counts(tmp_path):
    """A job ended at its walltime is not in the summary's JCT, nor in results.json's JCT list."""
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job, fabric_policy
    from fabric_hpc.sim import Simulator, write_results
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("leaf-spine:hosts=4,hosts_per_leaf=2")
    jobs = [Job("a", Request(gpus=8), 0.0, 100.0, duration=10.0), Job("t", Request(gpus=8), 0.0, 100.0, duration=500.0)]
    data = write_results(Simulator(fab, fabric_policy(), jobs).run(), tmp_path / "r")
    assert data["summary"]["timeouts"] == 1 and data["jct"] == [10.0]
    assert data["summary"]["mean_jct_s"] == pytest.approx(sum(data["jct"]) / len(data["jct"]))


def test_the_demo_workload_is_sized_to_the_fabric_it_is_given():
    """demo_compare(fabric=NVL72) rejected 553 of 1,200 jobs: 8-GPU hosts on 4-GPU trays."""
    from dataclasses import replace

    import numpy as np

    from fabric_hpc.sim.demo import DEMO_WORKLOAD, demo_workload
    from fabric_hpc.sim.engine import never_fits
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("nvl72:racks=2")
    spec = demo_workload(fab)
    assert (spec.cluster_gpus, spec.gpus_per_host) == (144, 4)
    sizes = np.bincount(fab.index.gpu_host)
    assert not [j for j in gang_workload(replace(spec, jobs=300)) if never_fits(j, fab, sizes) is not None]
    assert demo_workload(open_fabric()) == DEMO_WORKLOAD  # the default cluster's demo is unchanged


def test_a_gang_held_for_a_compact_placement_starts_when_the_hold_ends():
    """Two leaves each hold one long job: a 16-GPU gang could start across leaves at once but is
    held for a compact placement (900 s); with no other event it waited for the next job end
    (10,000 s) instead of starting when the hold ended."""
    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler import Job, fabric_policy
    from fabric_hpc.sim import Simulator
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("leaf-spine:hosts=4,hosts_per_leaf=2")
    long = [Job(n, Request(nodes=1, gpus_per_node=8), float(t), 20_000.0, duration=10_000.0)
            for n, t in (("a", 0), ("b", 2))]
    short = [Job(n, Request(nodes=1, gpus_per_node=8), float(t), 100.0, duration=10.0) for n, t in (("x", 1), ("y", 3))]
    gang = Job("c", Request(nodes=2, gpus_per_node=8), 20.0, 1000.0, duration=100.0)
    res = Simulator(fab, fabric_policy(compact_wait_s=900.0), [*long, *short, gang]).run()
    rec = next(r for r in res.records if r.job.id == "c")
    assert rec.first_start == 920.0 and rec.status == "done"


def test_the_run_report_keeps_jobs_named_free_or_down(tmp_path):
    """``fabric sim run``'s topology report gets the cluster state, not owner names: simulated jobs
    named ``free`` and ``down`` are jobs on the page (they were drawn as free and down GPUs)."""
    import re

    from fabric_hpc.placement.request import Request
    from fabric_hpc.scheduler.contract import Job

    jobs = [Job(id=n, request=Request(nodes=1, gpus_per_node=8), submit=0.0, walltime=100.0, duration=100.0)
            for n in ("free", "down")]
    write_results(Simulator(fabric(2, 2), fabric_policy(), jobs).run(), tmp_path, topology_report=True)
    page = (tmp_path / "topology.html").read_text()
    data = json.loads(re.search(r'id="fabric-data">(.*?)</script>', page, re.S).group(1))
    assert {j["id"]: j["gpus"] for j in data["jobs"]} == {"free": 8, "down": 8}
