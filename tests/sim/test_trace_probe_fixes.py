"""Defects a new-user probe found in the trace readers (2026-12-06), one test each."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import load_trace, read_jobcomp, read_openb, read_sacct, read_swf, read_tiresias
from fabric_hpc.sim.rows import NO_GPU_TRES, NOT_FINISHED, NOT_GPU
from fabric_hpc.sim.slurmlog import CLOCK_SKEW_S

TIRESIAS = "job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
OPENB = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
         "scheduled_time\n")
POD0 = "p0,1000,1024,1,1000,,LS,Running,100,200,100\n"
SWF1 = "1 0 -1 60 8 -1 -1 8 120 -1 1 1 1 -1 1 -1 -1 -1\n"
T0, T1 = "2026-10-01T00:00:00", "2026-10-01T01:00:00"
SACCT = "JobID|Submit|Start|End|Timelimit|NNodes|AllocTRES|Account|User|Partition|QOS|State\n"


def _sacct_row(jid, submit, start, end, state="COMPLETED", limit="1-00:00:00"):
    return f"{jid}|{submit}|{start}|{end}|{limit}|1|cpu=8,gres/gpu=8,node=1|llm|alice|gpu|normal|{state}\n"


def _jobcomp(jid, submit, start, end, state="COMPLETED", nodes="1"):
    return (f"JobId={jid} UserId=alice(1000) GroupId=alice(1000) Name=train JobState={state} Partition=gpu "
            f"TimeLimit=1440 StartTime={start} EndTime={end} NodeList=n1 NodeCnt={nodes} ProcCnt=8 "
            "WorkDir=/tmp "
            f"ReservationName= Tres=cpu=8,node=1 Account=llm QOS=normal WcKey= Cluster=c SubmitTime={submit} "
            f"EligibleTime={submit} DerivedExitCode=0:0 ExitCode=0:0\n")


# 1. --limit keeps the N earliest in memory O(N), every row still checked


def test_limit_keeps_the_n_earliest_of_an_unsorted_file(tmp_path):
    p = tmp_path / "t.csv"
    submits = [(i * 7919) % 5000 for i in range(5000)]  # a permutation of 0..4999
    p.write_text(TIRESIAS + "".join(f"{i},1,{s},1,vgg19,100,30\n" for i, s in enumerate(submits)))
    whole = read_tiresias(p)
    few = load_trace(f"tiresias:{p}", limit=7)
    assert [j.id for j in few] == [j.id for j in whole[:7]]
    assert [j.submit for j in few] == list(range(7)) and few[0].meta == whole[0].meta


def test_limit_holds_memory_to_the_jobs_kept(tmp_path):
    p = tmp_path / "many.csv"
    p.write_text(TIRESIAS + "".join(f"{i},1,{i},1,vgg19,100,30\n" for i in range(50_000)))
    tracemalloc.start()
    try:
        trace = read_tiresias(p, limit=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(trace) == 10
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB for 10 jobs of 50,000 rows"  # ~2 KB a row before


@pytest.mark.parametrize("reader, body, needle", [
    (read_tiresias, TIRESIAS + "1,1,0,1,vgg,100,30\n2,1,5,1,vgg,100,30\n3,x,9,1,vgg,100,30\n",
     r"t\.csv:4: num_gpu='x' is not a whole number"),
    (read_tiresias, TIRESIAS + "1,1,0,1,vgg,100,30\n2,1,5,1,vgg,100,30\n1,1,9,1,vgg,100,30\n",
     r"t\.csv:4: job id '1' already at line 2"),
    (read_swf, SWF1 + SWF1.replace("1 0 ", "1 5 ", 1),
     r"t\.csv:2: job id 'swf1' already at line 1"),
])
def test_limit_still_checks_every_row(tmp_path, reader, body, needle):
    p = tmp_path / "t.csv"
    p.write_text(body)
    with pytest.raises(ConfigError, match=needle):
        reader(p, limit=1)


# 2. impossible times are input errors naming the line (beyond a documented clock-skew tolerance)


@pytest.mark.parametrize("submit, start, end, needle", [
    (T0, "2025-10-01T00:00:00", T1, r"Start 2025-10-01T00:00:00 is .* before Submit"),
    (T0, T1, "2026-10-01T00:30:00", r"End 2026-10-01T00:30:00 is 1,800 s before Start"),
])
def test_sacct_and_jobcomp_refuse_times_out_of_order(tmp_path, submit, start, end, needle):
    s = tmp_path / "s.txt"
    s.write_text(SACCT + _sacct_row(1, "2026-10-01T00:00:00", "2026-10-01T00:00:00", "2026-10-01T00:01:00")
                 + _sacct_row(2, submit, start, end))
    with pytest.raises(ConfigError, match=r"s\.txt:3: " + needle) as exc:
        read_sacct(s)
    assert "fix or drop" in exc.value.hint
    j = tmp_path / "j.log"
    j.write_text(_jobcomp(5, submit, start, end))
    with pytest.raises(ConfigError, match=r"j\.log:1: " + needle):
        read_jobcomp(j)


def test_a_few_seconds_of_clock_skew_are_read_as_the_same_instant(tmp_path):
    s = tmp_path / "s.txt"
    s.write_text(SACCT + _sacct_row(1, "2026-10-01T00:00:05", "2026-10-01T00:00:00", "2026-10-01T01:00:00")
                 + _sacct_row(2, "2026-10-01T00:00:00", "2026-10-01T00:10:00", "2026-10-01T00:09:58"))
    a, b = sorted(read_sacct(s), key=lambda job: job.id)
    assert a.duration == 3595 and b.duration == 0 and CLOCK_SKEW_S >= 5


def test_openb_deletion_before_creation_is_an_error(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text(OPENB + POD0 + "p1,1000,1024,1,1000,,LS,Running,500,400,500\n")
    with pytest.raises(ConfigError, match=r"o\.csv:3: deletion_time=400 is before creation_time=500"):
        read_openb(p)


# 3. one skip note per reason; a truncated jobcomp line is an error


def test_unfinished_jobs_are_skipped_for_that_reason_not_as_cpu_jobs(tmp_path):
    s = tmp_path / "s.txt"
    s.write_text(SACCT + _sacct_row(1, "2026-10-01T00:00:00", "2026-10-01T00:00:00", "2026-10-01T00:01:00")
                 + _sacct_row(2, "2026-10-01T00:00:00", "2026-10-01T00:10:00", "Unknown", state="RUNNING")
                 + _sacct_row(3, "2026-10-01T00:00:00", "Unknown", "Unknown", state="PENDING")
                 + f"4|{T0}|{T0}|2026-10-01T00:01:00|60|0|cpu=2|x|y|cpu|normal|COMPLETED\n")
    t = read_sacct(s)
    assert len(t) == 1 and t.skipped == 3 and t.skipped_by == {NOT_FINISHED: 2, NO_GPU_TRES: 1}
    assert t.notes() == [f"2 row(s) of sacct:s.txt {NOT_FINISHED} and were skipped",
                         f"1 row(s) of sacct:s.txt {NO_GPU_TRES} and were skipped"]
    o = tmp_path / "o.csv"
    o.write_text(OPENB + POD0 + "p1,1000,1024,1,1000,,LS,Running,500,,500\n"
                 "p2,1000,1024,0,0,,LS,Running,500,900,500\n")
    assert read_openb(o).skipped_by == {NOT_FINISHED: 1, NOT_GPU: 1}


def test_a_truncated_jobcomp_line_is_an_error(tmp_path):
    j = tmp_path / "j.log"
    whole = _jobcomp(5, "2026-10-01T00:00:00", "2026-10-01T00:00:00", "2026-10-01T00:10:00")
    j.write_text(whole + whole.replace("JobId=5", "JobId=6")[:150] + "\n")
    with pytest.raises(ConfigError, match=r"j\.log:2: the jobcomp record of JobId=6 has no NodeCnt=, "
                                          r"SubmitTime= \(a truncated line\?\)"):
        read_jobcomp(j)


# 4. too many fields


def test_a_sacct_row_with_more_fields_than_its_header_is_an_error(tmp_path):
    s = tmp_path / "s.txt"
    s.write_text(SACCT + _sacct_row(1, "2026-10-01T00:00:00", "2026-10-01T00:00:00", "2026-10-01T00:01:00")
                 .replace("|normal|", "|normal|normal|"))
    with pytest.raises(ConfigError, match=r"s\.txt:2: 13 fields, the header has 12"):
        read_sacct(s)


def test_an_swf_line_with_more_than_18_fields_is_an_error(tmp_path):
    p = tmp_path / "x.swf"
    p.write_text("; comment\n1 0 -1 60 8 -1 -1 8 120 -1 1 1 1 -1 1 -1 -1 -1 7 7\n")
    with pytest.raises(ConfigError, match=r"x\.swf:2: an SWF line has 18 fields, this one 20"):
        read_swf(p)


# 5. a UTF-8 byte order mark (Excel's "CSV UTF-8")


@pytest.mark.parametrize("body, kind", [(TIRESIAS + "1,2,0,1,vgg,100,30\n", "tiresias"),
                                        (OPENB + POD0, "openb")])
def test_a_csv_with_a_byte_order_mark_is_read(tmp_path, body, kind):
    p = tmp_path / "excel.csv"
    p.write_bytes(b"\xef\xbb\xbf" + body.encode())
    t = load_trace(str(p))
    assert t.name == f"{kind}:excel.csv" and len(t) == 1 and t[0].gpus in (1, 2)


# 6. messages name the line, the bound and the fix


def test_messages_carry_a_fix(tmp_path):
    swf = tmp_path / "x.swf"
    swf.write_text("1 0 -1 60 9000000 -1 -1 8 120 -1 1 1 1 -1 1 -1 -1 -1\n")
    with pytest.raises(ConfigError, match=r"x\.swf:1: 9000000 processors is more than 1,000,000 GPUs") as e1:
        read_swf(swf)
    openb = tmp_path / "o.csv"
    openb.write_text(OPENB + "p0,1000,1024,1,1000,,Gold,Running,100,200,100\n")
    with pytest.raises(ConfigError, match=r"o\.csv:2: unknown qos 'Gold'") as e2:
        read_openb(openb)
    cols = tmp_path / "c.csv"
    cols.write_text("job_id,num_gpu,submit_time\n1,1,0\n")
    with pytest.raises(ConfigError, match=r"not a Tiresias trace \(no column duration") as e3:
        read_tiresias(cols)
    for e in (e1, e2, e3):
        assert e.value.hint, e.value.message


def test_a_too_long_csv_field_is_named_at_its_own_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(TIRESIAS + "1,1,0,1," + "v" * 200_000 + ",100,30\n")
    with pytest.raises(ConfigError, match=r"t\.csv:2: not valid CSV"):
        read_tiresias(p)


def test_a_huge_node_count_names_the_bound(tmp_path):
    j = tmp_path / "j.log"
    j.write_text(_jobcomp(5, T0, T0, "2026-10-01T00:10:00", nodes="2000000"))
    needle = "j.log:1: the job asks 16,000,000 GPUs (from 2,000,000 node(s) × 8), more than the 1,000,000"
    with pytest.raises(ConfigError, match=re.escape(needle)):
        read_jobcomp(j)


# 7. openb gpu_milli is a share of a GPU: 0..1000


def test_openb_gpu_milli_out_of_range_is_an_error(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text(OPENB + "p0,1000,1024,1,1e9,,LS,Running,100,200,100\n")
    with pytest.raises(ConfigError, match=r"o\.csv:2: gpu_milli=1e\+09 is not in 0\.\.1000"):
        read_openb(p)


def test_the_bundled_traces_read_as_before():
    data = Path(__file__).resolve().parents[2] / "data" / "traces"
    t = read_openb(data / "alibaba_openb_pod_list_default.csv")
    assert len(t) + t.skipped == 8152 and t.skipped_by[NOT_GPU] >= 1088
    assert len(read_tiresias(data / "tiresias_60_job.csv")) == 60
