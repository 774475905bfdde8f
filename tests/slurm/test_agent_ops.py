"""An admin operating the agent live (probe 4): its deferrals survive a restart, a reinstall with another
fallback and a purge of its state dir while it runs are caught, ``why`` does not blame Slurm for a decision
older than the log's part it read, SIGHUP reopens the decision log. Live: tests/slurm_integration/
test_agent_ops_live.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.deferral_store import DEFERRALS_FILE
from tests.slurm.test_agent_actions import Fake, agent, events, gang

FALLBACK = 60


def _blocker() -> Job:
    hosts = tuple(f"n{i}" for i in range(1, 17))
    now = time.time()
    return Job(job_id=1, name="big", state="RUNNING", comment="fabric", nodes=16, gpus_per_node=8,
               node_list=hosts, gpus={h: tuple(range(8)) for h in hosts}, submit_time=now - 300,
               start_time=now - 300)


def _deferred_once(tmp_path: Path) -> tuple[Fake, Job]:
    """A gang deferred by an agent (its begin time renewed: no longer submit + fallback), the agent gone."""
    now = time.time()
    # the plugin's deferral, nearly run out
    waiting = replace(gang(7), submit_time=now - 50, begin_time=now + 10)
    client = Fake([_blocker(), waiting])
    first = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.1)
    first.run(max_cycles=1)
    until = first.actions.deferrals[7]
    assert until > now + 50  # renewed: now + fallback
    return client, replace(waiting, begin_time=until)  # as Slurm keeps it


def test_a_restarted_agent_knows_its_own_renewed_deferral_and_places_the_gang(tmp_path: Path) -> None:
    client, waiting = _deferred_once(tmp_path)
    client._jobs = [waiting]  # the GPUs freed while no agent ran
    second = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.1)
    second.run(max_cycles=1)
    assert json.loads((tmp_path / "status.json").read_text())["started"] == [7]
    assert not [e for e in events(tmp_path) if e["event"] == "agent.waiting" and
                e["jobs"].get("7") == "BeginTime"]


def test_the_deferrals_file_drops_jobs_gone_and_a_corrupt_one_is_ignored_once(tmp_path: Path) -> None:
    client, waiting = _deferred_once(tmp_path)
    assert "7" in json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]
    client._jobs = [_blocker()]  # job 7 ended
    agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.1).run(max_cycles=1)
    assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"] == {}
    for bad in ("{not json", json.dumps({"format": "other", "jobs": {}}), json.dumps([1, 2]),
                json.dumps({"format": "fabric-agent-deferrals/2", "jobs": {"7": {"asked": ["x"]}}})):
        (tmp_path / DEFERRALS_FILE).write_text(bad)
        client._jobs = [_blocker(), waiting]
        a = agent(tmp_path, client, fallback_s=FALLBACK, interval_s=0.1)
        a.run(max_cycles=1)  # no crash
        ignored = [e for e in events(tmp_path) if e["event"] == "agent.deferrals_ignored"]
        assert ignored and ignored[-1]["file"] == str(tmp_path / DEFERRALS_FILE)
        assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]["7"]  # rewritten, whole
    assert len([e for e in events(tmp_path) if e["event"] == "agent.deferrals_ignored"]) == 4


def test_install_knows_the_agents_deferrals_file_as_its_own() -> None:
    from fabric_hpc.slurm.manifest import is_state_entry

    assert is_state_entry(DEFERRALS_FILE)


# -- 2, 3: install and uninstall while the agent runs -------------------------------------------------
def _install_config(tmp_path: Path, fallback_s: int) -> Path:
    import grp
    import os
    import pwd

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\ntopology = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"\n'
                    f"fallback_s = {fallback_s}\n[install]\n"
                    f'service_user = "{user}"\nslurm_group = "{group}"\npython = "/usr/bin/python3"\n'
                    'slurm_version = "25.11"\n')
    return path


@pytest.fixture()
def installed(tmp_path: Path, capsys):
    from fabric_hpc.cli.main import main
    from fabric_hpc.slurm.agent import agent_lock

    root = tmp_path / "root"
    cfg = _install_config(tmp_path, 60)
    assert main(["slurm", "install", "--config", str(cfg), "--root", str(root)]) == 0
    assert "restart" not in capsys.readouterr().out  # no agent runs
    lock = agent_lock(root / "var/lib/fabric-agent")
    lock.acquire()  # the agent, running
    try:
        yield root, lock
    finally:
        lock.release()


def test_a_reinstall_while_the_agent_runs_says_to_restart_it(tmp_path: Path, capsys, installed) -> None:
    import os

    from fabric_hpc.cli.main import main

    root, _ = installed
    argv = ["slurm", "install", "--root", str(root), "--config"]
    assert main([*argv, str(_install_config(tmp_path, 60))]) == 0
    assert "restart" not in capsys.readouterr().out  # nothing changed
    assert main([*argv, str(_install_config(tmp_path, 120))]) == 0
    out = capsys.readouterr().out
    assert f"the fabric agent (pid {os.getpid()}) runs with the settings it started with" in out, out
    assert "systemctl restart fabric-agent.service" in out


def test_uninstall_purge_state_refuses_while_the_agent_runs(tmp_path: Path, capsys, installed) -> None:
    import os

    from fabric_hpc.cli.main import main

    root, lock = installed
    cfg = _install_config(tmp_path, 60)
    argv = ["slurm", "uninstall", "--config", str(cfg), "--root", str(root), "--purge-state"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"the fabric agent (pid {os.getpid()}) is running on /var/lib/fabric-agent" in err, err
    assert "stop it first (systemctl stop fabric-agent.service)" in err
    assert (root / "var/lib/fabric-agent/agent.lock").exists()
    assert (root / "etc/fabric-hpc/agent.toml").exists()  # nothing removed
    lock.release()
    assert main(argv) == 0
    assert not (root / "var/lib/fabric-agent").exists()


def test_agent_check_reports_a_running_agent_with_another_fallback(tmp_path: Path, capsys, installed) -> None:
    import os

    from fabric_hpc.cli.main import main
    from fabric_hpc.slurm.plugins import render_job_submit

    root, _ = installed
    state = root / "var/lib/fabric-agent"
    lua = tmp_path / "job_submit.lua"
    lua.write_text(render_job_submit(state_dir=str(state), fallback_s=120, max_gpus_per_node=8))
    cfg = tmp_path / "check.toml"
    cfg.write_text(f'[agent]\ntopology = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"\n'
                   f'fallback_s = 120\nstate_dir = "{state}"\njob_submit = "{lua}"\ncontact_timeout_s = 1\n')
    (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "fallback_s": 60, "cycles": 3}))

    def row() -> dict:
        main(["agent", "check", "--config", str(cfg), "--json"])
        [r] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "running agent"]
        return r

    r = row()
    assert not r["ok"] and r["exit_code"] == 3, r
    assert f"the running agent (pid {os.getpid()}) defers jobs for 60 s, {lua} for 120 s" in r["detail"]
    assert "systemctl restart fabric-agent.service" in r["detail"]
    (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "fallback_s": 120, "cycles": 3}))
    assert row()["ok"]


# -- 4: `why` for a job whose decision is older than the part of the log read --------------------------
def _old_place_then_filler(state: Path, job_id: int, at: float) -> None:
    """decisions.jsonl: the agent's place record of ``job_id`` at ``at``, then more than TAIL_BYTES of
    other jobs' records."""
    from fabric_hpc.slurm.audit import TAIL_BYTES

    place = {"event": "agent.place", "ts": at, "job": job_id, "hosts": ["n1", "n2"], "gpus": [], "cost": 1.0,
             "domains": {"leaf": 1}, "solver": "greedy"}
    filler = json.dumps({"event": "agent.waiting", "ts": at + 60, "jobs": {"999": "Resources" + "x" * 900}})
    count = TAIL_BYTES // len(filler) + 10
    (state / "decisions.jsonl").write_text(json.dumps(place) + "\n" + (filler + "\n") * count)


def test_why_does_not_blame_slurm_for_a_placement_older_than_the_log_read(tmp_path: Path) -> None:
    from fabric_hpc.slurm.why import explain

    now = time.time()
    hosts = ("n1", "n2")
    job = Job(job_id=5, name="old", state="RUNNING", comment="fabric", nodes=2, gpus_per_node=8,
              node_list=hosts, gpus={h: tuple(range(8)) for h in hosts}, submit_time=now - 7200,
              start_time=now - 7000)
    _old_place_then_filler(tmp_path, 5, now - 7000)
    out = explain(Fake([job]), 5, state_dir=tmp_path)
    assert "Slurm's own scheduler did" not in out["text"], out["text"]
    assert "older than the part of the agent's decision log read" in out["text"]
    log = tmp_path / "decisions.jsonl"
    assert f"grep -E '\"(for_)?job\":5[,}}]' {log}.1 {log}" in out["text"]
    assert out["decisions"]["older"]["path"] == str(tmp_path / "decisions.jsonl")
    # a job submitted after the part read begins: its records would be in it; Slurm placed it
    young = replace(job, job_id=6, submit_time=now - 30, start_time=now - 20)
    out = explain(Fake([young]), 6, state_dir=tmp_path)
    assert "Slurm's own scheduler did" in out["text"] and "older" not in out["decisions"]


# -- 5: SIGHUP reopens the decision log ---------------------------------------------------------------
def test_a_hup_reopens_the_decision_log_by_name(tmp_path: Path) -> None:
    import signal

    a = agent(tmp_path, Fake([gang(3)]), interval_s=0.1)
    a.run(max_cycles=1)
    moved = tmp_path / "moved.jsonl"
    (tmp_path / "decisions.jsonl").rename(moved)
    a = agent(tmp_path, Fake([gang(4)]), interval_s=0.1)
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    try:
        a.install_signal_handlers()
        # before: the default action, ending the agent
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, old[signal.SIGHUP])
        (tmp_path / "decisions.jsonl").rename(tmp_path / "moved2.jsonl")  # the new agent's file, moved too
        signal.raise_signal(signal.SIGHUP)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    a.run(max_cycles=1)
    names = [e["event"] for e in events(tmp_path)]
    assert names[0] == "agent.logs_reopened" and "agent.place" in names and names[-1] == "agent.stop", names
    assert "agent.logs_reopened" not in (tmp_path / "moved2.jsonl").read_text()


def test_the_deferrals_file_keeps_the_jobs_deferred_last_only(tmp_path: Path, monkeypatch) -> None:
    from fabric_hpc.slurm import deferral_store
    from fabric_hpc.slurm.actions import Actions

    monkeypatch.setattr(deferral_store, "MAX_JOBS", 2)
    actions = Actions(Fake([]), lambda *a, **k: None)
    for job_id, until in ((1, 300.0), (2, 100.0), (3, 200.0)):
        actions.asked[job_id], actions.deferrals[job_id] = [until], until
    deferral_store.DeferralStore(tmp_path).save(actions)
    assert set(json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]) == {"1", "3"}
    back = Actions(Fake([]), lambda *a, **k: None)
    assert deferral_store.DeferralStore(tmp_path).load(back) is None
    assert back.deferrals == {3: 200.0, 1: 300.0} and back.asked == {3: [200.0], 1: [300.0]}


def test_the_pin_of_an_ended_job_stays_the_agents_for_a_requeue(tmp_path: Path, monkeypatch) -> None:
    """`scontrol requeue` of a job that ended brings it back pending with the agent's old pin: the agent
    must still know that ReqNodeList as its own (to move it), for ENDED_PIN_MEMORY_S, across a restart too
    (saved; the first to go when the file is full)."""
    from fabric_hpc.slurm import actions as actions_module
    from fabric_hpc.slurm import deferral_store
    from fabric_hpc.slurm.actions import ENDED_PIN_MEMORY_S, Actions

    now = [1_000_000.0]
    monkeypatch.setattr(actions_module.time, "time", lambda: now[0])
    actions = Actions(Fake([]), lambda *a, **k: None)
    actions.pins = {7: frozenset({"n1", "n2"}), 8: frozenset({"n3"})}
    actions.forget(pending=[], active=[8])  # 7 ended, 8 runs
    assert actions.pins == {7: frozenset({"n1", "n2"}), 8: frozenset({"n3"})}
    deferral_store.DeferralStore(tmp_path).save(actions)
    assert set(json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]) == {"7", "8"}
    back = Actions(Fake([]), lambda *a, **k: None)
    deferral_store.DeferralStore(tmp_path).load(back)
    assert back.pins == actions.pins
    monkeypatch.setattr(deferral_store, "MAX_JOBS", 1)
    deferral_store.DeferralStore(tmp_path).save(actions)
    assert set(json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]) == {"8"}  # the living job's
    now[0] += ENDED_PIN_MEMORY_S / 2
    actions.forget(pending=[7], active=[8])  # requeued: pending again, its pin is the agent's
    assert 7 in actions.pins and 7 not in actions.pins_ended
    actions.forget(pending=[], active=[8])  # ended again: the hour starts again
    now[0] += ENDED_PIN_MEMORY_S - 1
    actions.forget(pending=[], active=[8])
    assert 7 in actions.pins
    now[0] += 2
    actions.forget(pending=[], active=[])
    assert 7 not in actions.pins and actions.pins_ended == {8: now[0]}
