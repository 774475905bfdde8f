"""``agent.waiting`` listed every waiting job in one audit-log line: with ~10,000 waiting jobs a line
passed log shippers' limits (Loki's default ``max_line_size``, 256 KB) and was dropped there (SRE probe).
A cycle now writes one record per :data:`~fabric_hpc.slurm.audit.WAITING_PER_RECORD` jobs, each with its
own jobs' holds and reservations, and ``fabric slurm why`` reads them as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.events import read_json_lines, to_json
from fabric_hpc.slurm import audit
from fabric_hpc.slurm.why import explain
from tests.slurm.test_why_reserved import NOW, _cycle


def test_a_big_queue_is_split_into_bounded_records_with_their_own_holds() -> None:
    waiting = {j: "Resources" for j in range(1, 25_001)}
    reserved = {"7": {"start": NOW, "hosts": 16, "after": [1]},
                "24000": {"start": NOW, "hosts": 2, "after": []}}
    parts = audit.waiting_records(waiting, {"3": {"until": NOW}}, reserved)
    assert len(parts) == 25 and all(len(to_json(p)) < 64 << 10 for p in parts)
    assert {int(k) for p in parts for k in p["jobs"]} == set(waiting)
    assert parts[0]["reserved"] == {"7": reserved["7"]} and parts[0]["holds"] == {"3": {"until": NOW}}
    assert parts[23]["reserved"] == {"24000": reserved["24000"]} and "holds" not in parts[23]
    assert "reserved" not in parts[24] and audit.waiting_records({}) == []


def test_why_reads_each_job_from_its_own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "WAITING_PER_RECORD", 1)
    client, _ = _cycle(tmp_path)
    waiting = [e for e in read_json_lines(tmp_path / "decisions.jsonl") if e["event"] == "agent.waiting"]
    assert [sorted(w["jobs"]) for w in waiting] == [["2"], ["3"]]
    assert "reserved" in waiting[0] and "reserved" not in waiting[1]
    assert explain(client, 2, state_dir=tmp_path)["decisions"]["waiting"]["reserved"]["hosts"] == 16
    assert explain(client, 3, state_dir=tmp_path)["decisions"]["waiting"]["reason"] == "Priority"
