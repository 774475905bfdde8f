"""openb pods deleted while Pending never ran: their deletion - creation is a wait, not a run time."""

from __future__ import annotations

from pathlib import Path

from fabric_hpc.sim import read_openb
from fabric_hpc.sim.rows import NEVER_SCHEDULED

HEAD = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n")


def test_pods_deleted_while_pending_are_skipped_with_a_note(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text(HEAD + "ran,1000,1024,1,1000,,BE,Running,100,400,150\n"
                        "waited,1000,1024,2,1000,,LS,Pending,120,900,\n"
                        "failed,1000,1024,1,1000,,BE,Failed,130,200,140\n"
                        "odd-case,1000,1024,1,1000,,BE,pending ,140,300, \n")
    t = read_openb(p)
    assert sorted(j.id for j in t) == ["failed", "ran"]
    assert t.skipped_by == {NEVER_SCHEDULED: 2}
    assert any("never scheduled" in n for n in t.notes())


def test_a_pending_pod_that_was_scheduled_is_kept(tmp_path: Path) -> None:
    # a scheduled_time says it was placed (the phase is the last one the trace saw)
    p = tmp_path / "o.csv"
    p.write_text(HEAD + "late,1000,1024,1,1000,,BE,Pending,100,400,150\n")
    assert [j.id for j in read_openb(p)] == ["late"]


def test_a_pod_list_without_phase_columns_reads_as_before(tmp_path: Path) -> None:
    p = tmp_path / "o.csv"
    p.write_text("name,num_gpu,qos,creation_time,deletion_time\nx,1,BE,100,400\n")
    assert [j.id for j in read_openb(p)] == ["x"]


def test_the_bundled_openb_trace_drops_its_pending_pods() -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "traces" / "alibaba_openb_pod_list_default.csv"
    t = read_openb(data)
    rows = data.read_text().splitlines()[1:]
    pending_gpu = sum(1 for r in rows if r.split(",")[7] == "Pending" and int(r.split(",")[3]) > 0
                      and not r.split(",")[10].strip() and r.split(",")[9] != r.split(",")[8])
    assert t.skipped_by[NEVER_SCHEDULED] == pending_gpu > 0
