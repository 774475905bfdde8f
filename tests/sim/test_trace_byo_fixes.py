"""A cluster planner bringing their own traces to ``fabric sim run`` (2026-12-06): SWF from CPU
clusters, Slurm logs of 4-GPU hosts, CPU-only sacct rows, a sacct export across a DST change, other
public traces, and zero-second jobs; one test (or a few) each."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import (Simulator, load_trace, read_jobcomp, read_openb, read_sacct, read_swf,
                            read_tiresias)
from fabric_hpc.sim.rows import NEVER_RAN, NO_GPU_TRES, NO_RUN_TIME
from fabric_hpc.sim.slurmlog import __doc__ as SLURMLOG_DOC
from fabric_hpc.sim.swf import parse_queue_tiers

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "scheduler.md").read_text()
SACCT = "JobID|Submit|Start|End|Timelimit|NNodes|AllocTRES|Account|User|Partition|QOS|State\n"
T0, T1 = "2026-10-01T00:00:00", "2026-10-01T01:00:00"


def _swf(num: int, submit: int, run: int, procs: int, queue: int = 1) -> str:
    return f"{num} {submit} -1 {run} {procs} -1 -1 {procs} 7200 -1 1 1 1 -1 {queue} -1 -1 -1\n"


def _sim(tmp_path: Path, trace: str, *flags: str,
         topology: str = "superpod:sus=1") -> tuple[int, dict | None]:
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code = main(["sim", "run", "--trace", trace, "--topology", topology, "--out", str(out), "--no-progress",
                 "--no-topology-report", "--json", *flags])
    results = out / "results.json"
    return code, json.loads(results.read_text()) if results.exists() else None


# 1. SWF from CPU clusters: --procs-per-gpu and --swf-queue-tier on the CLI, checked and refused elsewhere


def test_procs_per_gpu_and_queue_tiers_reach_the_swf_reader_from_the_cli(tmp_path, capsys):
    p = tmp_path / "cpu.swf"
    p.write_text(_swf(1, 0, 60, 2_000_000) + _swf(2, 5, 60, 256, queue=2) + _swf(3, 9, 60, 40, queue=3))
    code, _ = _sim(tmp_path, f"swf:{p}")
    err = capsys.readouterr().err
    assert code == 3 and "--procs-per-gpu N" in err, err  # the flag the hint names now exists
    code, res = _sim(tmp_path, f"swf:{p}", "--procs-per-gpu", "32768", "--swf-queue-tier", "1=high,2=spot")
    assert code == 0, capsys.readouterr().err
    jobs = {j["id"]: j for j in res["jobs"]}
    assert {k: (j["gpus"], j["tier"]) for k, j in jobs.items()} == {
        "swf1": (64, "high"), "swf2": (1, "spot"), "swf3": (1, "normal")}  # ⌈2e6/32768⌉ = 62: 8 hosts of 8
    assert res["config"]["procs_per_gpu"] == 32768 and res["config"]["queue_tiers"] == "1=high,2=spot"
    trace = read_swf(p, procs_per_gpu=32, queue_tiers={2: "spot"})  # the Python API: 256 / 32 = 8 GPUs
    assert [(j.gpus, j.tier) for j in trace][1] == (8, "spot")


@pytest.mark.parametrize("flags, needle", [
    (["--procs-per-gpu", "x"], "--procs-per-gpu 'x' is not a whole number"),
    (["--procs-per-gpu", "0"], "procs_per_gpu=0 must be a whole number"),
    (["--procs-per-gpu", "-4"], "--procs-per-gpu '-4' is not a whole number"),
    (["--swf-queue-tier", "1=urgent"], "--swf-queue-tier: '1=urgent' is not QUEUE=TIER"),
    (["--swf-queue-tier", "high=1"], "--swf-queue-tier: 'high=1' is not QUEUE=TIER"),
    (["--swf-queue-tier", "1=high,1=spot"], "queue 1 is given more than once"),
    (["--gpus-per-node", "0"], "gpus_per_node=0 must be a whole number in 1..1024"),
])
def test_bad_trace_option_values_are_exit_3_naming_the_fix(tmp_path, capsys, flags, needle):
    p = tmp_path / "cpu.swf"
    p.write_text(_swf(1, 0, 60, 8))
    trace = f"jobcomp:{p}" if flags[0] == "--gpus-per-node" else f"swf:{p}"
    if flags[0] == "--gpus-per-node":
        p.write_text(_jobcomp(1, nodes=1))
    code, _ = _sim(tmp_path, trace, *flags)
    err = capsys.readouterr().err
    assert code == 3 and needle in err and "fix:" in err, err


@pytest.mark.parametrize("trace, flags, applies", [
    ("tiresias", ["--procs-per-gpu", "4"], "swf"),
    ("tiresias", ["--swf-queue-tier", "1=high"], "swf"),
    ("sacct", ["--procs-per-gpu", "4"], "swf"),
    ("swf", ["--gpus-per-node", "4"], "sacct, jobcomp"),
    ("synthetic", ["--procs-per-gpu", "4"], None),
])
def test_trace_options_are_refused_for_kinds_they_do_not_apply_to(tmp_path, capsys, trace, flags, applies):
    files = {"tiresias": "job_id,num_gpu,submit_time,duration\n1,1,0,60\n",
             "sacct": SACCT + f"1|{T0}|{T0}|{T1}|60|1|cpu=8,gres/gpu=8|a|u|gpu|normal|COMPLETED\n",
             "swf": _swf(1, 0, 60, 8)}
    ref = "synthetic:jobs=10"
    if trace != "synthetic":
        (tmp_path / "t").write_text(files[trace])
        ref = f"{trace}:{tmp_path / 't'}"
    code, _ = _sim(tmp_path, ref, *flags)
    err = capsys.readouterr().err
    assert code == 3 and f"traces take no {flags[0]}" in err, err
    assert applies is None or f"it applies to {applies} traces" in err


def test_parse_queue_tiers():
    assert parse_queue_tiers("1=high, 2=spot,-1=normal") == {1: "high", 2: "spot", -1: "normal"}
    with pytest.raises(ConfigError, match="map SWF queue numbers"):
        read_swf(ROOT / "data" / "traces" / "tiresias_60_job.csv", queue_tiers={"1": "high"})


# 2. a Slurm log without GPU counts: nodes × the fabric's GPUs per host (or --gpus-per-node)


def _jobcomp(jid: int, nodes: int = 2, tres: str = "cpu=8,node=2") -> str:
    return (f"JobId={jid} UserId=alice(1000) GroupId=alice(1000) Name=train JobState=COMPLETED Partition=gpu "
            f"TimeLimit=60 StartTime={T0} EndTime={T1} NodeList=n[1-2] NodeCnt={nodes} ProcCnt=8 "
            f"Tres={tres} Account=llm QOS=normal SubmitTime={T0}\n")


def test_a_jobcomp_job_without_gpu_counts_takes_the_fabrics_hosts(tmp_path, capsys):
    p = tmp_path / "jobcomp.log"
    p.write_text(_jobcomp(1))
    (job,) = read_jobcomp(p, gpus_per_host=4)
    assert (job.gpus, job.request.nodes, job.request.gpus_per_node) == (8, 2, 4)  # was 16 GPUs over 4 hosts
    (job,) = read_jobcomp(p, gpus_per_host=4, gpus_per_node=2)
    assert (job.gpus, job.request.nodes, job.request.gpus_per_node) == (4, 2, 2)
    code, res = _sim(tmp_path, f"jobcomp:{p}", topology="nvl72:racks=1")  # hosts of 4 GPUs
    assert code == 0 and res["jobs"][0]["gpus"] == 8, capsys.readouterr().err
    code, res = _sim(tmp_path, f"jobcomp:{p}", "--gpus-per-node", "1", topology="nvl72:racks=1")
    assert code == 0 and res["jobs"][0]["gpus"] == 2 and res["config"]["gpus_per_node"] == 1
    doc = " ".join(DOC.split())
    assert "a `NodeCnt=2` job is 8 GPUs on 2 hosts" in doc and "`--gpus-per-node N`" in doc


# 3. a sacct row whose AllocTRES lists no gres/gpu is a CPU-only job


def test_a_cpu_only_sacct_row_is_skipped_and_said(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text(SACCT + f"1|{T0}|{T0}|{T1}|60|2|cpu=64,mem=1G,node=2|a|u|cpu|normal|COMPLETED\n"
                 f"2|{T0}|{T0}|{T1}|60|1|cpu=8,gres/gpu=4,node=1|a|u|gpu|normal|COMPLETED\n"
                 f"3|{T0}|{T0}|{T1}|60|2||a|u|gpu|normal|COMPLETED\n")  # no TRES at all: 2 × gpus_per_node
    t = read_sacct(p, gpus_per_host=4)
    assert sorted((j.id, j.gpus) for j in t) == [("slurm2", 4), ("slurm3", 8)]
    assert t.skipped_by == {NO_GPU_TRES: 1}
    assert t.notes() == [f"1 row(s) of sacct:s.txt {NO_GPU_TRES} and were skipped"]
    assert "AccountingStorageTRES" in NO_GPU_TRES  # the way out for a site that does not account GPUs
    no_alloc = tmp_path / "r.txt"  # ReqTRES stands in for an absent AllocTRES: without GPUs, CPU-only too
    no_alloc.write_text("JobID|Submit|Start|End|NNodes|ReqTRES|State\n"
                        f"1|{T0}|{T0}|{T1}|1|cpu=4,node=1|COMPLETED\n2|{T0}|{T0}|{T1}|1||COMPLETED\n")
    t = read_sacct(no_alloc)
    assert [(j.id, j.gpus) for j in t] == [("slurm2", 8)] and t.skipped_by == {NO_GPU_TRES: 1}


# 4. sacct prints local time: TZ=UTC in the documented command, and the error names the cause


def test_a_dst_fall_back_names_the_time_zone_and_tz_utc(tmp_path):
    p = tmp_path / "s.txt"  # 01:50 CEST → (clocks back) 01:10 CET: End 40 min "before" Start
    p.write_text(SACCT + "1|2026-10-25T01:40:00|2026-10-25T01:50:00|2026-10-25T01:10:00|60|1|gres/gpu=1|"
                         "a|u|gpu|normal|COMPLETED\n")
    with pytest.raises(ConfigError) as e:
        read_sacct(p)
    assert "End 2026-10-25T01:10:00 is 2,400 s before Start" in e.value.message
    assert "daylight-saving" in e.value.hint and "TZ=UTC sacct" in e.value.hint
    assert "TZ=UTC sacct --parsable2" in SLURMLOG_DOC and "TZ=UTC sacct --parsable2" in DOC
    p.write_text(SACCT + "1|2026-10-25T01:40:00+02:00|2026-10-25T01:50:00+02:00|2026-10-25T01:10:00+01:00|"
                         "60|1|gres/gpu=1|a|u|gpu|normal|COMPLETED\n")
    (job,) = read_sacct(p)  # with offsets the times are converted: 20 min of run
    assert job.duration == 1200


# 5. an unknown format points to the minimal CSV, and the documented recipes load


def test_an_unknown_format_points_to_the_minimal_csv(tmp_path):
    p = tmp_path / "cluster_log.csv"
    p.write_text(HELIOS.splitlines()[0] + "\n")
    with pytest.raises(ConfigError) as e:
        load_trace(str(p))
    assert "job_id,num_gpu,submit_time,duration" in e.value.hint and "Bringing your own trace" in e.value.hint
    assert "prefix the path" not in e.value.hint
    with pytest.raises(ConfigError) as e:  # given as a kind, the missing-column error points there too
        load_trace(f"tiresias:{p}")
    assert "job_id,num_gpu,submit_time,duration" in e.value.hint
    minimal = tmp_path / "minimal.csv"
    minimal.write_text("job_id,num_gpu,submit_time,duration\na,2,100,60\nb,16,160,30\n")
    assert [(j.id, j.gpus, j.submit, j.duration) for j in load_trace(str(minimal))] == [
        ("ta", 2, 0.0, 60.0), ("tb", 16, 60.0, 30.0)]


HELIOS = """job_id,user,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue
h1,u1,8,32,1,COMPLETED,2020-04-01 00:00:06,2020-04-01 00:00:10,2020-04-01 01:00:10,3600,vc1
h2,u2,0,4,1,COMPLETED,2020-04-01 00:01:00,2020-04-01 00:01:00,2020-04-01 00:02:00,60,vc1
h3,u1,16,64,2,FAILED,2020-04-01 00:02:06,2020-04-01 00:03:00,2020-04-01 00:03:30,30,vc2
"""
PHILLY = [
    {"jobid": "application_1", "user": "u", "status": "Pass", "submitted_time": "2017-10-03 02:35:43",
     "attempts": [{"start_time": "2017-10-03 02:35:50", "end_time": "2017-10-03 02:40:50",
                   "detail": [{"ip": "m1", "gpus": ["gpu0", "gpu1"]},
                              {"ip": "m2", "gpus": ["gpu0", "gpu1"]}]}]},
    {"jobid": "application_2", "user": "u", "status": "Killed", "submitted_time": "2017-10-03 02:36:43",
     "attempts": []},
    {"jobid": "application_3", "user": "u", "status": "Failed", "submitted_time": "2017-10-03 02:37:43",
     "attempts": [{"start_time": "2017-10-03 02:38:00", "end_time": "2017-10-03 02:39:00",
                   "detail": [{"ip": "m3", "gpus": ["gpu3"]}]},
                  {"start_time": "2017-10-03 02:40:00", "end_time": "2017-10-03 02:50:00",
                   "detail": [{"ip": "m4", "gpus": ["gpu0"]}]}]},
]
PAI = """j1,worker,4,Terminated,100,700,600,29.3,50,V100
j1,ps,1,Terminated,100,700,600,29.3,0,
j2,worker,1,Terminated,200,260,600,29.3,100,T4
j3,worker,2,Failed,300,,600,29.3,100,T4
"""


def _recipes() -> list[str]:
    section = DOC.split("### Bringing your own trace", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_documented_conversion_recipes_load(tmp_path):
    pytest.importorskip("pandas")  # the Helios and PAI recipes use it (not a dependency of fabric-hpc)
    (tmp_path / "cluster_log.csv").write_text(HELIOS)
    (tmp_path / "cluster_job_log").write_text(json.dumps(PHILLY))
    (tmp_path / "pai_task_table.csv").write_text(PAI)
    recipes = _recipes()
    assert len(recipes) == 3
    for code in recipes:  # each as a user runs it: a script of its own, in the trace's directory
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120, env={**os.environ, "TZ": "Europe/Berlin"})
        assert run.returncode == 0, run.stderr
    helios = load_trace(str(tmp_path / "helios.csv"))
    assert [(j.id, j.gpus, j.submit, j.duration) for j in helios] == [("th1", 8, 0.0, 3600.0),
                                                                       ("th3", 16, 120.0, 30.0)]
    philly = load_trace(str(tmp_path / "philly.csv"))
    assert [(j.id, j.gpus, j.submit, j.duration) for j in philly] == [
        ("tapplication_1", 4, 0.0, 300.0), ("tapplication_3", 1, 120.0, 600.0)]
    pai = load_trace(str(tmp_path / "pai.csv"))
    assert [(j.id, j.gpus, j.submit, j.duration) for j in pai] == [("tj1", 4, 0.0, 600.0),
                                                                   ("tj2", 1, 100.0, 60.0)]


# 6. zero-second jobs: kept where a run time of 0 s was logged, skipped where the job never ran


def test_zero_second_jobs_follow_one_rule(tmp_path):
    swf = tmp_path / "z.swf"
    swf.write_text(_swf(1, 0, 0, 8) + _swf(2, 5, -1, 8) + _swf(3, 9, 60, 8))
    t = read_swf(swf)
    assert [(j.id, j.duration) for j in t] == [("swf1", 0.0), ("swf3", 60.0)]
    assert t.skipped_by == {NO_RUN_TIME: 1}
    assert "0 s" not in NO_RUN_TIME and "0 s" not in NEVER_RAN
    tir = tmp_path / "z.csv"
    tir.write_text("job_id,num_gpu,submit_time,duration\n1,1,0,0\n")
    assert [j.duration for j in read_tiresias(tir)] == [0.0]
    sacct = tmp_path / "z.txt"
    sacct.write_text(SACCT + f"1|{T0}|{T1}|{T1}|60|1|gres/gpu=1|a|u|gpu|normal|FAILED\n")
    assert [j.duration for j in read_sacct(sacct)] == [0.0]
    openb = tmp_path / "o.csv"
    openb.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                     "deletion_time,scheduled_time\np0,1000,1,1,1000,,LS,Pending,100,100,\n"
                     "p1,1000,1,1,1000,,LS,Running,100,200,100\n")
    t = read_openb(openb)
    assert len(t) == 1 and t.skipped_by == {NEVER_RAN: 1}
    assert t.notes() == [f"1 row(s) of openb:o.csv {NEVER_RAN} and were skipped"]
    from fabric_hpc.scheduler import make_policy
    from fabric_hpc.sim import summarize
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    res = Simulator(fab, make_policy("fabric"), list(read_swf(swf)), progress=False).run()
    s = summarize(res)
    assert s["finished"] == 2 and s["mean_wait_s"] == 0.0
    assert all(math.isfinite(v) for v in s.values() if isinstance(v, float)), s
