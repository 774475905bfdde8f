"""The agent's logs stay bounded: ``decisions.jsonl`` (and ``cycles.jsonl``) rotate to ``<name>.1`` at a
size, and unchanged waiting reasons are not written every cycle (a queue of 60 gangs at a 1 s interval
wrote ~86 MB a day before); readers reach into the rotated log. Also what an admin probe found about the
agent's checks: a state dir the system refuses, a model whose GPU counts differ from Slurm's."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.events import JsonLinesWriter, make_event, read_json_lines
from fabric_hpc.slurm import audit
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.topology import build, generators
from tests.slurm_integration.test_agent_replay import VERSIONS, recorded


def test_a_full_log_is_rotated_once_and_nothing_is_lost_or_split(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonLinesWriter(path, max_bytes=1000) as w:
        for i in range(40):
            w.write_many([make_event("e", i=i, pad="x" * 40)] * 2)
    now, old = read_json_lines(path), read_json_lines(tmp_path / "log.jsonl.1")
    assert path.stat().st_size <= 1000 and (tmp_path / "log.jsonl.1").stat().st_size <= 1000
    ids = [e["i"] for e in old + now]
    assert ids == sorted(ids) and ids[-1] == 39 and len(ids) % 2 == 0  # a write is never split
    assert not (tmp_path / "log.jsonl.2").exists()


def test_a_write_larger_than_the_bound_still_lands(tmp_path):
    with JsonLinesWriter(tmp_path / "l.jsonl", max_bytes=50) as w:
        w.write(make_event("big", pad="y" * 200))
        w.write(make_event("next"))
    assert [e["event"] for e in read_json_lines(tmp_path / "l.jsonl")] == ["next"]
    assert [e["event"] for e in read_json_lines(tmp_path / "l.jsonl.1")] == ["big"]


def _waiting_records(state_dir) -> list[dict]:
    return [e for e in read_json_lines(state_dir / audit.AUDIT_LOG) if e["event"] == "agent.waiting"]


def test_unchanged_waiting_reasons_are_written_on_change_or_after_the_refresh(tmp_path):
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    nodes, jobs = scale_recording(*recorded(VERSIONS[-1]), fab.hosts, pending=30, busy_fraction=0.9)
    agent = Agent(ReplayClient(nodes, jobs), fab,
                  AgentConfig(state_dir=str(tmp_path), usage_source="ledger", record_cycles=True))
    t0 = 1796313800.0
    first = agent.cycle(now=t0)
    assert first.waiting and len(_waiting_records(tmp_path)) == 1
    for k in range(1, 5):  # the same answers: the same reasons, nothing more to say
        assert agent.cycle(now=t0 + 30 * k).waiting == first.waiting
    assert len(_waiting_records(tmp_path)) == 1
    agent.cycle(now=t0 + audit.WAITING_REFRESH_S + 1)
    records = _waiting_records(tmp_path)
    assert len(records) == 2 and records[1]["jobs"] == records[0]["jobs"]
    assert len(read_json_lines(tmp_path / audit.CYCLES_LOG)) == 6  # every cycle recorded (replayable)


def test_a_state_dir_the_system_refuses_is_an_external_failure():
    """/sys takes no new directory (EPERM, as a read-only filesystem's EROFS): exit 5, not 3."""
    import pytest

    from fabric_hpc.errors import ExternalError
    from fabric_hpc.slurm.agent import check_state_dir

    with pytest.raises(ExternalError, match="cannot create state dir /sys/fabric-agent-state") as err:
        check_state_dir(Path("/sys/fabric-agent-state"))
    assert err.value.exit_code == 5 and "fabric slurm install" in err.value.hint


def test_readers_find_decisions_in_the_rotated_log_and_refuse_a_fifo(tmp_path):
    import os

    import pytest

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm import report
    from fabric_hpc.slurm.why import last_decisions

    (tmp_path / "decisions.jsonl.1").write_text(
        '{"ts": 1, "event": "agent.place", "job": 5, "hosts": ["n1"]}\n')
    (tmp_path / "decisions.jsonl").write_text(
        '{"ts": 2, "event": "agent.waiting", "jobs": {"6": "Compact"}}\n')
    log = report.read_agent_log(tmp_path)
    assert set(log.placed) == {5} and log.waiting[6]["reason"] == "Compact" and not log.truncated
    assert last_decisions(tmp_path, 5)["place"]["hosts"] == ["n1"]
    tail = audit.read_tail(tmp_path, limit=70)  # the current file whole, a cut line of the old one dropped
    assert [e["event"] for e in tail.entries] == ["agent.waiting"] and tail.truncated
    fifo = tmp_path / "f"
    fifo.mkdir()
    os.mkfifo(fifo / "decisions.jsonl")
    with pytest.raises(ConfigError, match="is not a regular file"):  # at once: never blocks on a FIFO
        report.read_agent_log(fifo)


def test_a_model_with_other_gpu_counts_than_slurm_is_named(tmp_path):
    """Slurm's nodes have 8 GPUs (the recorded answers), this model 4: `fabric agent check` fails
    on these words and `agent run` logs them (admin probe: every check said ok)."""
    from fabric_hpc.slurm.agent import gpu_mismatch

    nodes, _ = recorded(VERSIONS[-1])
    slurm_nodes = ReplayClient(json.dumps(nodes), json.dumps({"jobs": []})).nodes()
    four = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=4, cpus=8))
    eight = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    text = gpu_mismatch(four, slurm_nodes)
    assert text.startswith(f"{len(slurm_nodes)} node(s) have another GPU count in Slurm than in the "
                           "fabric model")
    assert "(Slurm 8, model 4)" in text and text.endswith(f"and {len(slurm_nodes) - 5} more")
    assert gpu_mismatch(eight, slurm_nodes) is None
    agent = Agent(ReplayClient(json.dumps(nodes), json.dumps({"jobs": []})), four,
                  AgentConfig(state_dir=str(tmp_path), usage_source="ledger"))
    agent.run(max_cycles=1)  # it runs (placing on the model's GPUs) and says so in its log
    logged = [e for e in read_json_lines(tmp_path / audit.AUDIT_LOG) if e["event"] == "agent.model_mismatch"]
    assert [e["detail"] for e in logged] == [text]
