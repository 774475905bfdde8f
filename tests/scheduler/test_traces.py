"""Trace readers: bundled Tiresias and openb traces, SWF, sacct --parsable2, jobcomp/filetxt, synthetic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.sim import gang_workload, load_trace, read_openb, read_sacct, read_swf, read_tiresias
from fabric_hpc.sim.slurmlog import parse_duration, tres_gpus

DATA = Path(__file__).resolve().parents[2] / "data" / "traces"


def test_tiresias_bundled():
    t = read_tiresias(DATA / "tiresias_60_job.csv")
    assert len(t) == 60 and t[0].submit == 0
    first = t[0]
    assert first.gpus == 1 and first.duration == 164 and first.meta["model"] == "vgg19"
    assert all(j.gpus in (1, 2, 4, 8, 16, 32, 64) for j in t)
    big = [j for j in t if j.gpus > 8]
    assert all(j.request.gpus_per_node == 8 and j.request.nodes * 8 == j.gpus for j in big)


def test_openb_bundled_maps_qos_to_tiers():
    t = read_openb(DATA / "alibaba_openb_pod_list_default.csv")
    assert len(t) + t.skipped == 8152
    assert t.skipped >= 1088  # the CPU-only pods
    tiers = {j.account: j.tier for j in t}
    assert tiers["LS"] == "high" and tiers["BE"] == "spot" and tiers["Burstable"] == "normal"
    pod0 = next(j for j in t if j.id == "openb-pod-0000")
    assert pod0.duration == 12537496 and pod0.submit == 0


def test_swf(tmp_path):
    p = tmp_path / "x.swf"
    p.write_text("; Version: 2.2\n"
                 "1 0 5 3600 16 -1 -1 16 7200 -1 1 3 7 -1 1 -1 -1 -1\n"
                 "2 60 0 100 4 -1 -1 4 600 -1 1 4 8 -1 2 -1 -1 -1\n"
                 "3 70 0 -1 0 -1 -1 0 600 -1 5 4 8 -1 2 -1 -1 -1\n")
    t = read_swf(p, procs_per_gpu=2, queue_tiers={2: "spot"})
    assert [(j.id, j.gpus, j.walltime, j.duration, j.tier, j.account) for j in t] == [
        ("swf1", 8, 7200, 3600, "normal", "g7"), ("swf2", 2, 600, 100, "spot", "g8")]
    assert t.skipped == 1
    p.write_text("1 2 3\n")
    with pytest.raises(ConfigError, match="18 fields"):
        read_swf(p)


SACCT = """JobID|JobName|Submit|Start|End|Timelimit|NNodes|AllocTRES|Account|User|Partition|QOS|State
100|train|2026-10-01T00:00:00|2026-10-01T00:10:00|2026-10-01T02:10:00|04:00:00|4|cpu=64,gres/gpu=32,node=4|llm|alice|gpu|high|COMPLETED
100.batch|batch|2026-10-01T00:10:00|2026-10-01T00:10:00|2026-10-01T02:10:00||1|cpu=16,gres/gpu=8,node=1|llm||||COMPLETED
101|eval|2026-10-01T00:05:00|2026-10-01T00:06:00|2026-10-01T00:36:00|1-00:00:00|1|cpu=8,gres/gpu:h100=2,node=1|vision|bob|spot|normal|COMPLETED
102|never|2026-10-01T00:06:00|Unknown|Unknown|30|1|||carol|gpu|normal|PENDING
103|cpu|2026-10-01T00:07:00|2026-10-01T00:07:00|2026-10-01T00:08:00|UNLIMITED|2||x|dan|gpu|normal|COMPLETED
"""


def test_sacct_parsable2(tmp_path):
    p = tmp_path / "sacct.txt"
    p.write_text(SACCT)
    t = read_sacct(p, gpus_per_node=8)
    by = {j.id: j for j in t}
    assert set(by) == {"slurm100", "slurm101", "slurm103"} and t.skipped == 1
    a = by["slurm100"]
    assert (a.submit, a.duration, a.walltime, a.gpus, a.request.nodes, a.tier, a.account) == (
        0, 7200, 4 * 3600, 32, 4, "high", "llm")
    b = by["slurm101"]
    assert (b.submit, b.gpus, b.walltime, b.tier, b.user) == (300, 2, 86400, "spot", "bob")
    c = by["slurm103"]  # no GPU TRES: whole nodes; UNLIMITED: 2 x duration
    assert c.gpus == 16 and c.walltime == 120
    assert load_trace(str(p)).name == t.name  # sniffed


def test_slurm_durations_and_tres():
    assert [parse_duration(x) for x in ("30", "05:00", "01:02:03", "2-00:00:00", "1-12", "UNLIMITED")] == [
        1800, 300, 3723, 172800, 129600, None]
    assert tres_gpus("cpu=4,gres/gpu=8,node=1") == 8
    assert tres_gpus("gres/gpu:a100=2,gres/gpu:h100=4") == 6
    assert tres_gpus("cpu=4") is None
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_bad_inputs(tmp_path):
    with pytest.raises(NotFoundError):
        load_trace(str(tmp_path / "none.csv"))
    p = tmp_path / "x.txt"
    p.write_text("hello world\n")
    with pytest.raises(ConfigError, match="cannot tell"):
        load_trace(str(p))
    with pytest.raises(ConfigError, match="not sacct"):
        read_sacct(p)
    with pytest.raises(ConfigError, match="bad parameter"):
        load_trace("synthetic:bogus=1")
    head = "job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
    for body, needle in (("0,8,0,1,vgg19\n", r"t\.csv:2: the row has fewer fields .*no duration"),
                         ("0,-4,0,1,vgg19,100,1\n", r"t\.csv:2: num_gpu=-4 is not in 0\.\."),
                         ("0,1,0,1,vgg19,100,1\n0,2,5,1,vgg19,100,1\n", r"t\.csv:3: job id '0' already at line 2")):
        (tmp_path / "t.csv").write_text(head + body)
        with pytest.raises(ConfigError, match=needle):
            read_tiresias(tmp_path / "t.csv")


def test_synthetic_is_seeded_and_hits_its_load():
    a, b = gang_workload(jobs=500, seed=3), gang_workload(jobs=500, seed=3)
    assert a == b and gang_workload(jobs=500, seed=4) != a
    work = sum(j.gpus * j.duration for j in a)
    horizon = max(j.submit for j in a)
    assert work / (1024 * horizon) == pytest.approx(0.95, rel=0.15)
    assert all(j.walltime >= j.duration for j in a)
    assert {j.tier for j in a} == {"high", "normal", "spot"}
    assert any(j.request.nodes > 1 for j in a)
    assert len(load_trace("synthetic:jobs=40,seed=1")) == 40


def test_comm_profile_defaults_by_model_and_trace_columns_override(tmp_path):
    from fabric_hpc.sim import CommProfile
    from fabric_hpc.sim.contention import DEFAULT_COMM_FRACTION

    t = read_tiresias(DATA / "tiresias_60_job.csv")
    vgg = next(j for j in t if j.meta["model"].startswith("vgg"))
    assert CommProfile.of(vgg).fraction == pytest.approx(DEFAULT_COMM_FRACTION * 1.5)
    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval,comm_fraction,comm_bytes\n"
                 "0,16,0,1,vgg,100,1,0.6,1e9\n1,16,0,1,vgg,100,1,,\n")
    a, b = read_tiresias(p)
    assert CommProfile.of(a) == CommProfile(0.6, 1e9)
    assert CommProfile.of(b).fraction == pytest.approx(DEFAULT_COMM_FRACTION * 1.5)
    bad = tmp_path / "bad.csv"
    bad.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval,comm_fraction\n"
                   "0,16,0,1,vgg,100,1,2\n")
    with pytest.raises(ConfigError, match="comm_fraction"):
        CommProfile.of(read_tiresias(bad)[0])


def test_a_bad_sacct_row_is_named_by_its_line_in_the_file(tmp_path):
    """Blank lines count: the error names the line an editor shows."""
    header, *rows = SACCT.strip().splitlines()
    p = tmp_path / "sacct.txt"
    p.write_text("\n".join([header, "", rows[0], "", "104|x"]) + "\n")
    with pytest.raises(ConfigError, match=r"sacct.txt:5: 2 fields"):
        read_sacct(p)


def test_a_job_given_twice_names_both_lines(tmp_path):
    header, *rows = SACCT.strip().splitlines()
    p = tmp_path / "sacct.txt"
    p.write_text("\n".join([header, rows[0], rows[2], rows[0]]) + "\n")
    with pytest.raises(ConfigError, match=r"sacct.txt:4: job '100' appears again \(first at line 2\)"):
        read_sacct(p)


def test_synthetic_gangs_fit_the_cluster_they_are_sized_for():
    from fabric_hpc.sim import load_trace

    jobs = load_trace("synthetic:jobs=2000,load=1.0,seed=1,cluster_gpus=64")
    assert max(j.gpus for j in jobs) <= 64 and {j.gpus for j in jobs} >= {1, 8, 64}
    work = sum(j.gpus * j.duration for j in jobs)
    span = max(j.submit for j in jobs) - min(j.submit for j in jobs)
    assert 0.85 < work / (64 * span) < 1.15  # the offered load is the load asked for


@pytest.mark.parametrize("value", ["1.5", "abc", "-0.1", "nan"])
def test_a_bad_communication_profile_is_named_by_its_line_at_reading(tmp_path, value):
    """It was found only when the job first started, mid-replay, named by its prefixed id."""
    from fabric_hpc.sim import load_trace

    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval,comm_fraction\n"
                 "1,4,0,1,x,10,1,0.2\n" f"2,4,5,1,x,10,1,{value}\n")
    with pytest.raises(ConfigError, match=rf"t.csv:3: comm_fraction '{re.escape(value)}' is not a number in 0..1"):
        load_trace(f"tiresias:{p}")


@pytest.mark.parametrize("kind", ["", "tiresias:", "openb:"])
def test_an_empty_trace_file_is_named_empty(tmp_path, kind):
    from fabric_hpc.sim import load_trace

    p = tmp_path / "t.csv"
    p.write_text("\n\n")
    with pytest.raises(ConfigError, match="the trace file is empty"):
        load_trace(f"{kind}{p}")


@pytest.mark.parametrize("old, new, needle", [
    ("2026-10-01T00:00:00|2026-10-01T00:10:00", "0001-01-01T00:00:00|2026-10-01T00:10:00", "Submit '0001-01-01T00:00:00' is outside"),
    ("|04:00:00|", "|999999999-00:00:00|", "Timelimit '999999999-00:00:00' is longer"),
])
def test_sacct_times_are_in_range(tmp_path, old, new, needle):
    p = tmp_path / "sacct.txt"
    p.write_text(SACCT.replace(old, new, 1))
    with pytest.raises(ConfigError, match=re.escape(needle)):
        read_sacct(p)


def test_synthetic_tp_marks_the_gangs_it_divides_and_leaves_the_draws_alone():
    from fabric_hpc.sim import load_trace

    plain, tp = load_trace("synthetic:jobs=300,seed=5"), load_trace("synthetic:jobs=300,seed=5,tp=8")
    assert [(j.id, j.gpus, j.submit, j.duration) for j in plain] == [(j.id, j.gpus, j.submit, j.duration) for j in tp]
    assert {j.request.tp for j in tp if j.gpus % 8 == 0} == {8}
    assert {j.request.tp for j in tp if j.gpus % 8} == {None} and {j.request.tp for j in plain} == {None}
    trays = load_trace("synthetic:jobs=300,seed=5,tp=8,gpus_per_host=4")  # NVL72 trays: groups of two hosts
    assert {j.request.tp_slices()[1] for j in trays if j.request.tp} == {"nvlink"}
    with pytest.raises(ConfigError, match="tp=0 must be a whole number in 1..1,024"):
        load_trace("synthetic:tp=0")
    staged = load_trace("synthetic:jobs=300,seed=5,tp=8,pp=2")
    assert {(j.request.tp, j.request.pp) for j in staged if j.gpus % 16 == 0} == {(8, 2)}
    assert all((j.request.pp == 2) == (j.gpus % (2 * (j.request.tp or 1)) == 0) for j in staged)


def _sized(topology: str) -> dict:
    from fabric_hpc.sim.synthetic import fabric_sizes
    from fabric_hpc.topology import open_fabric

    return fabric_sizes(open_fabric(topology))


@pytest.mark.parametrize("params, topology", [("tp=16", "superpod:sus=1"), ("tp=8,gpus_per_host=4", "superpod:sus=1"),
                                              ("tp=144", "nvl72:racks=4")])
def test_synthetic_tp_wider_than_an_nvlink_domain_is_refused(params, topology):
    """A tp group must sit in one NVLink domain: a tp no gang could keep there (16 on DGX hosts of 8,
    8 over hosts of 4 on DGX, 144 over 18-host NVL72 racks) is refused, not turned into rejected jobs."""
    from fabric_hpc.sim import load_trace

    with pytest.raises(ConfigError, match="no gang could keep a group in one NVLink domain") as e:
        load_trace(f"synthetic:jobs=50,seed=1,{params}", fabric_defaults=_sized(topology))
    assert "use tp <=" in e.value.hint


@pytest.mark.parametrize("params, topology", [("tp=16", "nvl72:racks=2"), ("tp=64", "nvl72:racks=4"),
                                              ("tp=8", "superpod:sus=1"), ("tp=8,pp=4", "nvl72:racks=2"),
                                              ("pp=4", "superpod:sus=1")])
def test_synthetic_tp_and_pp_jobs_all_fit_the_fabric(params, topology):
    """Every job of a synthetic tp/pp workload sized to a fabric can run on it (docs: no synthetic job
    is rejected for size), and the gangs that can keep their groups do carry tp."""
    from fabric_hpc.sim import load_trace
    from fabric_hpc.sim.engine import never_fits
    from fabric_hpc.topology import open_fabric

    fab = open_fabric(topology)
    jobs = list(load_trace(f"synthetic:jobs=300,seed=1,{params}", fabric_defaults=_sized(topology)))
    assert [(j.id, never_fits(j, fab)) for j in jobs if never_fits(j, fab)] == []
    assert any(j.request.tp or j.request.pp for j in jobs)


def test_synthetic_tp_goes_only_to_gangs_whose_groups_the_domains_hold():
    """NVLink domains of 6, 6 and 4 hosts hold three groups of 4 hosts (tp=16 over hosts of 4): a
    32-GPU gang (two groups) gets tp, a 64-GPU one (four groups) does not (it still runs, without tp)."""
    from fabric_hpc.sim.synthetic import GangWorkload, gang_workload

    spec = GangWorkload(jobs=60, cluster_gpus=64, gpus_per_host=4, nvlink_hosts=(6, 6, 4), tp=16,
                        size_mix={32: 0.5, 64: 0.5})
    got = {(j.gpus, j.request.tp) for j in gang_workload(spec)}
    assert got == {(32, 16), (64, None)}


@pytest.mark.parametrize("params, needle", [("tp=2.5", "tp='2.5' must be a whole number"),
                                            ("seed=５", "seed='５' must be a whole number"),
                                            ("load=1_0", "load='1_0' is not a number"),
                                            ("tp=3", "tp=3 divides no gang size of the mix"),
                                            ("tp=12", "tp=12 is neither a divisor nor a multiple of gpus_per_host=8"),
                                            ("pp=3", "pp=3: no gang size of the mix")])
def test_synthetic_parallel_keys_say_what_is_wrong(params, needle):
    from fabric_hpc.sim import load_trace

    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_trace(f"synthetic:jobs=20,{params}")


@pytest.mark.parametrize("tres", ["cpu=8,gres/gpu=²,node=1", "cpu=8,gres/gpu:h100=²", "gres/gpu=٣", "gres/gpu=9" * 5000])
def test_a_gpu_count_that_is_not_ascii_digits_is_named_not_a_traceback(tmp_path, tres):
    """``str.isdigit`` took '²' (int() then raised ValueError: a traceback) and '٣' (read as 3)."""
    p = tmp_path / "sacct.txt"
    p.write_text(SACCT.replace("cpu=64,gres/gpu=32,node=4", tres, 1))
    with pytest.raises(ConfigError, match=r"sacct\.txt:2: gres/gpu(:h100)? '.{1,40}' is not a whole number") as exc:
        read_sacct(p)
    assert exc.value.hint
    jc = tmp_path / "jobcomp.log"
    jc.write_text("JobId=7 UserId=a(1) JobState=COMPLETED Partition=gpu TimeLimit=60 StartTime=2026-10-01T00:10:00 "
                  f"EndTime=2026-10-01T00:20:00 NodeCnt=1 Tres={tres} Account=x QOS=normal "
                  "SubmitTime=2026-10-01T00:00:00\n")
    with pytest.raises(ConfigError, match=r"jobcomp\.log:1: gres/gpu(:h100)? .* is not a whole number"):
        load_trace(f"jobcomp:{jc}")


@pytest.mark.parametrize("reader, body, needle", [
    ("tiresias", "0,²,0,1,vgg19,100,1\n", r"t\.csv:2: num_gpu='²' is not a whole number"),
    ("tiresias", "0,٣,0,1,vgg19,100,1\n", r"t\.csv:2: num_gpu='٣' is not a whole number"),
    ("tiresias", "0,1_0,0,1,vgg19,100,1\n", r"t\.csv:2: num_gpu='1_0' is not a whole number"),
    ("tiresias", "0,2,٣,1,vgg19,100,1\n", r"t\.csv:2: submit_time='٣' is not a number"),
    ("tiresias", "0,2,0,1,vgg19,1_00,1\n", r"t\.csv:2: duration='1_00' is not a number"),
])
def test_trace_numbers_are_ascii(tmp_path, reader, body, needle):
    (tmp_path / "t.csv").write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n" + body)
    with pytest.raises(ConfigError, match=needle) as exc:
        load_trace(f"{reader}:{tmp_path / 't.csv'}")
    assert "\n  fix: " in str(exc.value)


def test_swf_and_openb_numbers_are_ascii_and_named(tmp_path):
    p = tmp_path / "x.swf"
    p.write_text("1 0 5 3600 ١٦ -1 -1 16 7200 -1 1 3 7 -1 1 -1 -1 -1\n")
    with pytest.raises(ConfigError, match=r"x\.swf:1: allocated processors='١٦' is not a whole number"):
        read_swf(p)
    p.write_text("1 0 5 ３６００ 16 -1 -1 16 7200 -1 1 3 7 -1 1 -1 -1 -1\n")
    with pytest.raises(ConfigError, match=r"x\.swf:1: run time='３６００' is not a number"):
        read_swf(p)
    o = tmp_path / "o.csv"
    o.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
                 "scheduled_time\np0,1000,1024,²,1000,,LS,Running,0,100,0\n")
    with pytest.raises(ConfigError, match=r"o\.csv:2: num_gpu='²' is not a whole number"):
        read_openb(o)


def test_a_slurm_duration_or_node_count_in_other_digits_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="bad Slurm duration"):
        parse_duration("٣٠")
    with pytest.raises(ConfigError, match="bad Slurm duration"):
        parse_duration("9" * 5000)
    p = tmp_path / "sacct.txt"
    p.write_text(SACCT.replace("|04:00:00|4|", "|04:00:00|²|", 1))
    with pytest.raises(ConfigError, match=r"sacct\.txt:2: node count '²' is not a whole number"):
        read_sacct(p)


def test_a_tiresias_row_longer_than_its_header_is_refused_with_its_line(tmp_path):
    """csv.DictReader kept the extra fields under the key None: the row was read with shifted columns unseen."""
    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
                 "0,1,0,1,vgg19,100,1\n1,2,0,1,vgg19,100,1,7\n")
    with pytest.raises(ConfigError, match=r"t\.csv:3: the row has 8 fields, the header 7"):
        read_tiresias(p)


def _jobcomp_line(jid, state, submit, start, end, tres="cpu=8,gres/gpu=8,node=1", limit="60"):
    return (f"JobId={jid} UserId=alice(1000) GroupId=alice(1000) Name=train JobState={state} Partition=gpu "
            f"TimeLimit={limit} StartTime={start} EndTime={end} NodeList=n1 NodeCnt=1 ProcCnt=8 WorkDir=/tmp "
            f"ReservationName= Tres={tres} Account=llm QOS=normal WcKey= Cluster=c SubmitTime={submit} "
            f"EligibleTime={submit} DerivedExitCode=0:0 ExitCode=0:0\n")


def test_jobcomp_requeued_job_is_one_job_from_its_records(tmp_path):
    """Slurm writes a jobcomp record at every requeue (job_completion_logger(job, true) in job_mgr.c):
    two lines of JobId=7 were refused as 'appears again ... (sacct without --duplicates)'."""
    from fabric_hpc.sim import read_jobcomp

    p = tmp_path / "jobcomp.log"
    p.write_text(_jobcomp_line(6, "COMPLETED", "2026-10-01T00:00:00", "2026-10-01T00:00:00", "2026-10-01T00:01:00")
                 + _jobcomp_line(7, "REQUEUED", "2026-10-01T00:00:10", "2026-10-01T00:01:00", "2026-10-01T00:11:00")
                 + _jobcomp_line(7, "NODE_FAIL", "2026-10-01T00:11:00", "2026-10-01T00:12:00", "2026-10-01T00:13:00")
                 + _jobcomp_line(7, "COMPLETED", "2026-10-01T00:13:01", "2026-10-01T00:20:00", "2026-10-01T00:50:00",
                                 tres="cpu=16,gres/gpu=16,node=2", limit="120")
                 + _jobcomp_line(8, "REQUEUED", "2026-10-01T00:30:00", "2026-10-01T00:31:00", "2026-10-01T00:32:00"))
    t = read_jobcomp(p)
    by = {j.id: j for j in t}
    assert set(by) == {"slurm6", "slurm7"} and t.skipped == 1  # job 8 is pending again when the log ends
    j = by["slurm7"]
    # the first record's submit (shifted: job 6 at 0), the last record's run, GPUs, limit and state
    assert (j.submit, j.duration, j.gpus, j.walltime) == (10, 1800, 16, 7200)
    assert j.meta["state"] == "COMPLETED" and j.meta["requeues"] == 2 and j.meta["source"] == "jobcomp.log:4"
    assert "requeues" not in by["slurm6"].meta


@pytest.mark.parametrize("second, needle", [
    (_jobcomp_line(7, "COMPLETED", "2026-10-01T00:00:00", "2026-10-01T00:01:00", "2026-10-01T00:11:00"),
     r"jobcomp\.log:2: JobId=7 is the same record as line 1"),
    (_jobcomp_line(7, "COMPLETED", "2026-10-01T00:05:00", "2026-10-01T00:05:00", "2026-10-01T00:30:00"),
     r"jobcomp\.log:2: JobId=7 starts at 2026-10-01T00:05:00, before its record at line 1 ended"),
    (_jobcomp_line(7, "COMPLETED", "2026-09-30T00:00:00", "2026-10-01T00:12:00", "2026-10-01T00:30:00"),
     r"jobcomp\.log:2: JobId=7 was submitted at 2026-09-30T00:00:00, before its record at line 1"),
])
def test_jobcomp_records_of_one_id_that_are_not_requeues_are_refused(tmp_path, second, needle):
    from fabric_hpc.sim import read_jobcomp

    p = tmp_path / "jobcomp.log"
    p.write_text(_jobcomp_line(7, "COMPLETED", "2026-10-01T00:00:00", "2026-10-01T00:01:00", "2026-10-01T00:11:00")
                 + second)
    with pytest.raises(ConfigError, match=needle) as exc:
        read_jobcomp(p)
    assert "jobcomp logs" in exc.value.hint and "sacct" not in exc.value.hint


@pytest.mark.parametrize("ref, needle, fix", [
    ("bogus:x.csv", "unknown trace kind 'bogus' in 'bogus:x.csv'", "kinds: tiresias, openb, swf, sacct, jobcomp, synthetic"),
    ("tiresias:", "trace 'tiresias:' names no file after 'tiresias:'", "give it as tiresias:PATH"),
    ("jobcomp: ", "trace 'jobcomp: ' names no file after 'jobcomp:'", "give it as jobcomp:PATH"),
])
def test_a_trace_reference_with_a_bad_kind_or_no_file_says_so(ref, needle, fix):
    with pytest.raises(ConfigError) as exc:
        load_trace(ref)
    assert exc.value.message == needle and fix in exc.value.hint


def test_a_bare_path_with_a_colon_is_still_a_path(tmp_path):
    p = tmp_path / "a:b.csv"
    p.write_text((DATA / "tiresias_60_job.csv").read_text())
    assert len(load_trace(str(p))) == 60
    with pytest.raises(NotFoundError, match="no trace file"):
        load_trace(str(tmp_path / "x:y.csv"))


def test_rejection_reasons_and_the_note_count_in_the_singular_too():
    from fabric_hpc.sim.engine import never_fits
    from fabric_hpc.sim.metrics import _note
    from fabric_hpc.sim.traces import gang_request
    from fabric_hpc.scheduler.contract import Job
    from fabric_hpc.topology import build, generators

    fab = build(generators.leaf_spine(1, gpus=1))
    job = Job(id="j", request=gang_request(2, 8), submit=0, walltime=60, duration=10)
    assert never_fits(job, fab) == "needs 2 GPUs, the fabric has 1"
    job = Job(id="j", request=gang_request(1, 8), submit=0, walltime=60, duration=10)
    assert never_fits(job, build(generators.leaf_spine(1, gpus=0))) == "needs 1 GPU, the fabric has 0"
    assert _note(1, 0, 1, [object()]) == ("JCT and slowdown over the 0 of 1 job that completed; 1 ended at its "
                                          "walltime (timeout, reported on its own); 1 can never fit this fabric and "
                                          "is counted as rejected (--strict refuses such a trace)")
    assert "2 ended at their walltime (timeouts," in _note(3, 1, 2, [])


def test_a_sacct_row_in_a_requeue_state_is_skipped_as_pending(tmp_path):
    p = tmp_path / "sacct.txt"
    p.write_text(SACCT.replace("|gpu|high|COMPLETED", "|gpu|high|REQUEUED", 1))
    t = read_sacct(p)
    assert "slurm100" not in {j.id for j in t} and t.skipped == 2
