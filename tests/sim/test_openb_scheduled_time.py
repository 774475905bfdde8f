"""openb: a pod runs from its scheduled_time to its deletion_time; creation → scheduled is the original
cluster's queue wait, which the replay must not count as run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import read_openb
from fabric_hpc.sim.rows import NEVER_RAN

HEAD = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n")


def test_duration_is_deletion_minus_scheduled_and_submit_is_creation(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    # openb-pod-0607 of the bundled trace: waited 14,330 s, ran 550 s
    p.write_text(HEAD + "first,1000,1024,1,1000,,LS,Running,10262000,10262100,10262000\n"
                        "openb-pod-0607,16000,65536,1,1000,,LS,Running,10262679,10277559,10277009\n")
    jobs = {j.id: j for j in read_openb(p)}
    assert jobs["openb-pod-0607"].duration == 550
    assert jobs["openb-pod-0607"].submit == 679
    assert jobs["first"].duration == 100


def test_time_scale_applies_to_the_run_from_scheduled(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + "a,1000,1024,1,1000,,BE,Running,1000,9000,5000\n")
    (job,) = read_openb(p, time_scale=0.001)
    assert job.duration == pytest.approx(4.0)


def test_without_a_scheduled_time_the_run_is_deletion_minus_creation(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + "failed,1000,1024,1,1000,,BE,Failed,100,400,\n")
    assert [j.duration for j in read_openb(p)] == [300]
    q = tmp_path / "q.csv"
    q.write_text("name,num_gpu,qos,creation_time,deletion_time\nx,1,BE,100,400\n")
    assert [j.duration for j in read_openb(q)] == [300]


@pytest.mark.parametrize("sched, word", [("50", "before creation_time"), ("500", "after deletion_time")])
def test_a_scheduled_time_out_of_order_is_refused_naming_the_line(tmp_path: Path, sched: str,
                                                                  word: str) -> None:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + f"a,1000,1024,1,1000,,BE,Running,100,400,{sched}\n")
    with pytest.raises(ConfigError) as e:
        read_openb(p)
    assert f"{p}:2" in str(e.value) and "scheduled_time" in str(e.value) and word in str(e.value)


def test_a_pod_deleted_when_it_was_scheduled_never_ran(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + "a,1000,1024,1,1000,,BE,Running,100,400,400\n"
                        "b,1000,1024,1,1000,,BE,Running,100,400,200\n")
    t = read_openb(p)
    assert [j.id for j in t] == ["b"] and t.skipped_by == {NEVER_RAN: 1}


def test_the_bundled_trace_replays_run_times_not_waits() -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "traces" / "alibaba_openb_pod_list_default.csv"
    jobs = {j.id: j for j in read_openb(data)}
    assert jobs["openb-pod-0607"].duration == 10277559 - 10277009
