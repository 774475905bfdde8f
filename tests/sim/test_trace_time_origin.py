"""--time-scale fixes a ms trace, and submit times from any origin are shifted to 0
(probe 2026-12-06)."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import load_trace, read_openb, read_swf, read_tiresias

HEAD = "job_id,num_gpu,submit_time,duration\n"


# 3. --time-scale fixes a ms trace, and submit times from any origin are shifted to 0


def test_time_scale_applies_before_the_range_check(tmp_path):
    p = tmp_path / "ms.csv"
    p.write_text(HEAD + "0,4,1700000000000,100000\n1,4,1700000010000,50000\n")
    trace = read_tiresias(p, time_scale=0.001)  # refused before: 1.7e12 checked against 1e10 unscaled
    assert [(j.submit, j.duration, j.walltime) for j in trace] == [(0.0, 100.0, 200.0), (10.0, 50.0, 100.0)]
    assert [j.submit for j in load_trace(f"tiresias:{p}", time_scale=0.001, limit=1)] == [0.0]
    p.write_text(HEAD + "0,4,1700000000000,2e10\n")  # a 231-day job in milliseconds
    with pytest.raises(ConfigError, match=r"ms\.csv:2: duration=2e\+10 is longer than 1e\+10 s") as err:
        read_tiresias(p)
    assert "--time-scale" in err.value.hint
    assert read_tiresias(p, time_scale=0.001)[0].duration == 2e7


def test_negative_submit_offsets_are_shifted_to_zero(tmp_path):
    p = tmp_path / "neg.csv"
    p.write_text(HEAD + "0,4,-100,5\n1,4,10,50\n")
    assert [j.submit for j in read_tiresias(p)] == [0.0, 110.0]
    assert [j.submit for j in read_tiresias(p, time_scale=2.0, limit=1)] == [0.0]
    openb = tmp_path / "o.csv"
    openb.write_text("name,num_gpu,qos,creation_time,deletion_time\np0,1,LS,-30,70\np1,1,BE,0,10\n")
    got = [(j.id, j.submit, j.duration) for j in read_openb(openb)]
    assert got == [("p0", 0.0, 100.0), ("p1", 30.0, 10.0)]
    swf = tmp_path / "neg.swf"  # SWF's origin is 0 and -1 means unknown: a negative submit is refused
    swf.write_text("1 -1 -1 60 8 -1 -1 8 120 -1 1 1 1 -1 1 -1 -1 -1\n")
    with pytest.raises(ConfigError, match=r"neg\.swf:1: submit_time=-1\.0 is not a finite time >= 0"):
        read_swf(swf)


def test_a_span_too_long_after_scaling_is_refused_naming_its_rows(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text(HEAD + "0,4,5,100\n1,4,-1,100\n2,4,2e10,50\n")
    needle = r"long\.csv: submit_time spans 2e\+10 s \(line 3 to line 4\)"
    with pytest.raises(ConfigError, match=needle) as err:
        read_tiresias(p)
    assert "--time-scale" in err.value.hint
    assert [j.submit for j in read_tiresias(p, time_scale=0.1)] == [0.0, 0.6, 2e9 + 0.1]
    for body, needle in (("0,4,0,-5\n", "duration=-5.0 is not a finite time >= 0"),
                         ("0,4,nan,5\n", "submit_time=nan is not a finite time"),
                         ("0,4,0,inf\n", "duration=inf is not a finite time")):
        p.write_text(HEAD + body)
        with pytest.raises(ConfigError, match=needle):
            read_tiresias(p, time_scale=0.1)
