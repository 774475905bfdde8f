"""The agent's actions one at a time (slurm/actions.py), its pins (view.py) and its status, on a scripted
Slurm: a failed action does not block the others, refusals of the agent itself are fatal, pins do not
outlive the agent or its purpose. The same behaviour on live Slurm: tests/slurm_integration/test_agent_live_fixes.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.actions import MAX_PIN_FAILURES, AgentPrivilegeError
from fabric_hpc.slurm.agent import Agent, AgentConfig
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError
from fabric_hpc.slurm.view import PinRules, build_view
from fabric_hpc.topology import build, generators

FAB = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))


class Fake(SlurmClient):
    """16 idle hosts n1..n16 (or ``hosts``), the given jobs; updates recorded, some refused."""

    backend = "fake"

    def __init__(self, jobs: list[Job], *, refuse: dict[int, str] | None = None, hosts: int = 16,
                 cpus_alloc: dict[str, int] | None = None, keep_pins: bool = True) -> None:
        self._jobs, self.refuse, self.hosts, self.keep_pins = jobs, refuse or {}, hosts, keep_pins
        self.cpus_alloc = cpus_alloc or {}
        self.calls: list[tuple[str, int, dict[str, str]]] = []

    def nodes(self) -> list[Node]:
        return [Node(name=f"n{i}", state="idle", cpus=8, cpus_alloc=self.cpus_alloc.get(f"n{i}", 0), gpus=8)
                for i in range(1, self.hosts + 1)]

    def jobs(self) -> list[Job]:
        return self._jobs

    def update(self, job_id: int, **fields: str) -> None:
        self.calls.append(("update", job_id, fields))
        if job_id in self.refuse and "ReqNodeList" in fields and fields["ReqNodeList"]:
            raise SlurmError(self.refuse[job_id])
        if fields.get("ReqNodeList") and self.keep_pins:  # pinned: pending on those hosts, eligible now (as Slurm would keep it)
            from fabric_hpc.hostlist import expand

            self._jobs = [replace(j, req_nodes=tuple(expand(fields["ReqNodeList"])), begin_time=time.time())
                          if j.job_id == job_id else j for j in self._jobs]

    def requeue(self, job_id: int) -> None:
        self.calls.append(("requeue", job_id, {}))

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        raise NotImplementedError

    hold = release = cancel = submit  # type: ignore[assignment]


def gang(job_id: int, nodes: int = 2, **kw) -> Job:
    return Job(job_id=job_id, name=f"g{job_id}", state="PENDING", comment="fabric", nodes=nodes, gpus_per_node=8,
               submit_time=float(job_id), **kw)


def agent(tmp_path: Path, client: SlurmClient, **cfg) -> Agent:
    return Agent(client, FAB, AgentConfig(state_dir=str(tmp_path), **cfg))


def pinned_by(a: Agent, jobs: Sequence[Job]) -> Agent:
    """``a`` remembering the ReqNodeList of each of ``jobs`` as a pin it set (any other is someone else's)."""
    a.actions.pins.update({j.job_id: frozenset(j.req_nodes) for j in jobs if j.req_nodes})
    return a


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]


def test_one_refused_pin_does_not_block_the_others_and_is_handed_over_after_a_few(tmp_path: Path) -> None:
    client = Fake([gang(1), gang(2), gang(3)], refuse={1: "Invalid node name specified for job 1"})
    a = agent(tmp_path, client)
    for _ in range(MAX_PIN_FAILURES + 2):
        a.cycle()
    pins = [(j, f["ReqNodeList"]) for kind, j, f in client.calls if kind == "update" and f.get("ReqNodeList")]
    assert {j for j, _ in pins} == {1, 2, 3}          # 2 and 3 pinned although 1 was refused
    assert sum(j == 1 for j, _ in pins) == MAX_PIN_FAILURES  # then no more tries: handed over
    log = events(tmp_path)
    assert [e["job"] for e in log if e["event"] == "agent.failed"] == [1] * MAX_PIN_FAILURES
    assert "Invalid node name" in [e for e in log if e["event"] == "agent.failed"][0]["error"]
    [hand] = [e for e in log if e["event"] == "agent.handoff"]
    assert hand["job"] == 1 and "pinning it failed 3 times" in hand["reason"]
    assert ("update", 1, {"ReqNodeList": "", "StartTime": "now"}) in client.calls
    assert sum(e["event"] == "agent.place" and e["job"] == 1 for e in log) == MAX_PIN_FAILURES
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["failed_actions"] == MAX_PIN_FAILURES and "Invalid node name" in status["last_action_error"]


@pytest.mark.parametrize("message", ["Invalid user id for job 1", "Access/permission denied for job 1"])
def test_slurm_refusing_the_agent_itself_is_fatal_with_the_fix(tmp_path: Path, message: str) -> None:
    client = Fake([gang(1)], refuse={1: message})
    a = agent(tmp_path, client, interval_s=0.1)
    with pytest.raises(AgentPrivilegeError) as exc:
        a.run(max_cycles=5)
    assert exc.value.exit_code == 3 and "AdminLevel=Operator" in exc.value.hint and "SlurmUser" in exc.value.hint
    assert a.cycles == 0


def test_model_hosts_slurm_does_not_have_are_down(tmp_path: Path) -> None:
    big = build(generators.leaf_spine(32, hosts_per_leaf=4, gpus=8, cpus=8))
    client = Fake([gang(1, nodes=2)], hosts=16)
    view = build_view(big, client.nodes(), client.jobs(), now=100.0)
    assert len(view.missing) == 16 and "n17" in view.missing
    assert view.state.free_gpus_of_host("n17") == [] if hasattr(view.state, "free_gpus_of_host") else True
    a = Agent(client, big, AgentConfig(state_dir=str(tmp_path)))
    for _ in range(3):
        res = a.cycle()
        for s in res.started:
            assert all(int(h[1:]) <= 16 for h in s["hosts"]), s


def test_agent_run_refuses_a_model_without_a_slurm_node(tmp_path: Path) -> None:
    a = agent(tmp_path, Fake([], hosts=0))
    with pytest.raises(ConfigError, match="none of Slurm's 0 nodes is a host of the fabric model"):
        a.run(max_cycles=1)


def test_stop_releases_the_pins_of_jobs_not_started(tmp_path: Path) -> None:
    pinned = gang(1, req_nodes=("n1", "n2"), begin_time=1.0)
    client = Fake([pinned, gang(2)])
    a = pinned_by(agent(tmp_path, client, interval_s=0.1), [pinned])
    a.run(max_cycles=1)
    assert ("update", 1, {"ReqNodeList": ""}) in client.calls and ("update", 2, {"ReqNodeList": ""}) in client.calls
    stop = [e for e in events(tmp_path) if e["event"] == "agent.stop"][0]
    assert stop["released"] == [1, 2]  # 2 was pinned in the one cycle, then released too


def test_a_requeued_victim_loses_its_old_pin() -> None:
    from fabric_hpc.slurm.actions import Actions

    client = Fake([])
    actions = Actions(client, lambda *a, **k: None)
    actions.pins[5] = frozenset({"n1", "n2"})  # the agent's pin
    actions.apply([5], [], {}, [], 60)
    assert client.calls == [("requeue", 5, {}), ("update", 5, {"ReqNodeList": ""})]


def test_a_pin_slurm_does_not_start_is_replaced_elsewhere_then_handed_over(tmp_path: Path) -> None:
    now = 1000.0
    stuck = gang(1, req_nodes=("n1", "n2"), begin_time=now - 61)
    v = build_view(FAB, Fake([]).nodes(), [stuck], now=now, pins=PinRules(timeout_s=60))
    assert v.stale == {1: ("n1", "n2")} and 1 in v.candidates
    v = build_view(FAB, Fake([]).nodes(), [stuck], now=now, pins=PinRules(timeout_s=120))
    assert v.pinned == {1: ("n1", "n2")} and not v.stale
    client = Fake([stuck], keep_pins=False)  # Slurm keeps the old pin, never starts it
    a = pinned_by(agent(tmp_path, client, pin_timeout_s=60), [stuck])
    res = a.cycle(now=now)
    assert not {"n1", "n2"} & set(res.started[0]["hosts"])  # placed away from the stale pin
    for _ in range(MAX_PIN_FAILURES - 1):  # Slurm takes each new pin (the agent's), never starts the job
        client._jobs = [replace(stuck, req_nodes=tuple(res.started[0]["hosts"]))]
        res = a.cycle(now=now)
    assert 1 in a.actions.handed_off
    assert any(e["event"] == "agent.handoff" and "did not start it" in e["reason"] for e in events(tmp_path))


def test_hosts_without_the_jobs_cpus_are_left_out() -> None:
    busy = {f"n{i}": 8 for i in range(1, 9)}  # n1-n8: every CPU allocated, GPUs free
    job = gang(1, nodes=2, cpus=8)
    v = build_view(FAB, Fake([], cpus_alloc=busy).nodes(), [job], now=100.0)
    from fabric_hpc.hostlist import expand

    assert set(expand(v.pending[0].job.request.exclude)) == set(busy)


def test_no_handoff_in_a_cycle_that_pins(tmp_path: Path) -> None:
    bad = Job(job_id=9, name="bad", state="PENDING", comment="fabric:within=rack", nodes=2, gpus_per_node=8,
              submit_time=50.5, begin_time=110.5)  # the plugin's deferral (fallback_s 60): not a --begin
    client = Fake([bad, gang(1)])
    a = agent(tmp_path, client)
    a.cycle(now=100.0)
    kinds = [(j, tuple(f)) for _, j, f in client.calls]
    assert (1, ("ReqNodeList", "StartTime")) in kinds and all(j != 9 for j, _ in kinds)  # postponed
    client._jobs = [bad]
    a.cycle(now=101.0)
    assert ("update", 9, {"ReqNodeList": "", "StartTime": "now"}) in client.calls
    [hand] = [e for e in events(tmp_path) if e["event"] == "agent.handoff"]
    assert hand["job"] == 9 and "rack" in hand["reason"]


def test_a_failed_cycle_is_in_status_json_and_the_audit_log_is_group_readable(tmp_path: Path) -> None:
    class Down(Fake):
        def jobs(self) -> list[Job]:
            raise SlurmError("slurmctld is down")

    a = agent(tmp_path, Down([]), interval_s=0.1, max_backoff_s=1.0)
    a.lock.acquire()
    a._error(SlurmError("slurmctld is down"), 0.25)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["errors"] == 1 and "slurmctld is down" in status["last_error"] and status["cycles"] == 0
    assert stat.S_IMODE((tmp_path / "decisions.jsonl").stat().st_mode) == 0o640


@pytest.mark.parametrize("make,expect", [
    (lambda d: d / "x" / "state", "does not exist either"),
    (lambda d: (d / "file").write_text("") or d / "file", "is not a directory"),
])
def test_a_bad_state_dir_is_refused_not_created(tmp_path: Path, make, expect: str) -> None:
    path = make(tmp_path)
    out = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology",
                          "leaf-spine:hosts=2,hosts_per_leaf=2", "--state-dir", str(path)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SLURM_CONF": str(tmp_path / "none.conf")})
    assert out.returncode == 3, out
    assert expect in out.stderr and "fabric slurm install" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


def test_a_taken_metrics_port_is_named(tmp_path: Path) -> None:
    import socket

    from fabric_hpc.slurm.metrics import AgentMetrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError) as exc:
            AgentMetrics(port)
    assert f"127.0.0.1:{port}" in exc.value.message and "metrics_port" in exc.value.hint


def test_agent_decisions_reach_the_event_stream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="fabric_hpc"):
        agent(tmp_path, Fake([gang(1)])).cycle()
    names = [getattr(r, "event", {}).get("event") for r in caplog.records]
    assert "agent.place" in names


def test_a_closed_stdout_pipe_exits_0_quietly() -> None:
    proc = subprocess.run(f"{sys.executable} -m fabric_hpc.cli topology show superpod:sus=4 | (exec 0<&-; true);"
                          " exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc


def test_agent_check_privilege_names_who_may_modify_jobs() -> None:
    """root, the SlurmUser and a Slurm operator may run the agent; anyone else is a ConfigError
    naming SlurmUser and the user's AdminLevel (`scontrol show config` / `sacctmgr` answers as Slurm
    prints them; without slurmdbd sacctmgr fails and there are no operators)."""
    from fabric_hpc.slurm.privilege import check_privilege, slurm_user_from

    config = "Configuration data as of 2026-12-05T10:00:00\nSlurmUser               = slurm(64030)\nSlurmdUser = root(0)\n"
    assert slurm_user_from(config) == "slurm"

    def run(levels: dict[str, str]):
        def answer(argv: Sequence[str]) -> str:
            if argv[0] == "scontrol":
                return config
            if argv[4] not in levels:
                raise SlurmError("sacctmgr: error: Problem talking to the database: Connection refused")
            return levels[argv[4]] + "\n"
        return answer

    assert check_privilege(run({}), "root") == "runs as root"
    assert check_privilege(run({}), "slurm") == "runs as SlurmUser (slurm)"
    assert check_privilege(run({"ops": "Operator"}), "ops") == "ops is a Slurm operator"
    with pytest.raises(ConfigError, match="fabric may not modify other users' jobs .SlurmUser is slurm, "
                                          "fabric's AdminLevel is none"):
        check_privilege(run({}), "fabric")
    with pytest.raises(ConfigError, match="AdminLevel is None"):
        check_privilege(run({"fabric": "None"}), "fabric")


def test_why_shows_the_reason_of_a_hand_over(tmp_path: Path) -> None:
    """`fabric slurm why` said "the agent was down or the deferral ran out" for a job the agent had
    handed to Slurm because of its options; it now gives the agent's reason, pending or running."""
    from fabric_hpc.events import JsonLinesWriter, make_event
    from fabric_hpc.slurm.why import explain

    audit = JsonLinesWriter(tmp_path / "decisions.jsonl")
    audit.write(make_event("agent.handoff", job=26, reason="unknown level 'rack'"))
    audit.close()

    class _One:
        def __init__(self, job: Job) -> None:
            self._job = job

        def job(self, job_id: int) -> Job:
            return self._job

    for state, nodes in (("PENDING", ()), ("RUNNING", ("n9", "n10"))):
        job = Job(job_id=26, name="g", state=state, comment="fabric:within=rack", nodes=2, gpus_per_node=8,
                  node_list=nodes)
        text = explain(_One(job), 26, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
        assert "handed it to Slurm's own scheduler" in text and "unknown level 'rack'" in text, text
        assert "the agent was down" not in text


def _held(job_id: int, **kw) -> Job:
    return gang(job_id, priority=0, reason="JobHeldUser", **kw)


def test_held_job_is_not_placed_and_keeps_no_gpus(tmp_path: Path) -> None:
    """A held gang (sbatch -H) submitted first was pinned to the only free hosts and kept their GPUs,
    so the next gang waited on idle nodes. Held jobs are skipped now, and only their deferral is kept
    up (released, the job still comes to the agent)."""
    client = Fake([_held(1, nodes=16), gang(2, nodes=16, priority=4294901757)])
    a = agent(tmp_path, client)
    res = a.cycle(now=1000.0)
    assert [s["job"] for s in res.started] == [2] and 1 not in res.waiting and res.pending == 1
    pins = {c[1] for c in client.calls if c[2].get("ReqNodeList")}
    assert pins == {2}
    assert ("update", 1, {"StartTime": "now+60"}) in client.calls  # deferred, not pinned


def test_a_pinned_job_that_is_held_is_unpinned(tmp_path: Path) -> None:
    """Pinned by the agent, then held before Slurm started it: its ReqNodeList is cleared (fabric jobs
    have no -w of their own) and its deferral renewed in one update; its hosts go to the next gang."""
    now = time.time()
    client = Fake([_held(1, req_nodes=("n1", "n2"), begin_time=now - 1), gang(2, nodes=16)])
    a = pinned_by(agent(tmp_path, client), client.jobs())
    res = a.cycle(now=now)
    assert res.unpinned == {1: "held"} and [s["job"] for s in res.started] == [2]
    assert client.calls[0] == ("update", 1, {"ReqNodeList": "", "StartTime": "now+60"})
    unpin = [e for e in events(tmp_path) if e["event"] == "agent.unpin"]
    assert [(e["job"], e["reason"]) for e in unpin] == [(1, "held")]


@pytest.mark.parametrize("fields,held", [
    ({"priority": 0, "reason": "JobHeldUser"}, True),
    ({"priority": 0, "reason": "JobHeldAdmin"}, True),
    ({"priority": 0, "reason": "launch failed requeued held"}, True),
    ({"priority": None, "reason": "JobHeldAdmin"}, True),
    ({"priority": None, "reason": "BeginTime"}, False),
    ({"priority": 7, "reason": "Resources"}, False),
    ({"priority": 0, "reason": "None", "state": "RUNNING"}, False),
])
def test_job_held(fields: dict, held: bool) -> None:
    assert replace(gang(1), **fields).held is held


def test_the_backends_leave_an_unread_priority_unknown() -> None:
    from fabric_hpc.slurm import decode
    from fabric_hpc.slurm.cli_backend import job_from_scontrol

    line = "JobId=7 JobName=x JobState=PENDING Reason=BeginTime NumNodes=2 TresPerNode=gres/gpu:8"
    assert job_from_scontrol(line).priority is None and not job_from_scontrol(line).held
    assert job_from_scontrol(line + " Priority=0").held
    rec = {"job_id": 7, "job_state": ["PENDING"], "state_reason": "BeginTime"}
    assert decode.job(rec).priority is None
    assert decode.job({**rec, "priority": {"set": True, "infinite": False, "number": 0}}).held


@pytest.mark.parametrize("reason", ["Dependency", "DependencyNeverSatisfied"])
def test_a_job_waiting_on_a_dependency_is_not_placed_and_keeps_no_gpus(tmp_path: Path, reason: str) -> None:
    """A gang submitted with --dependency=afterok:N while N runs (reason Dependency, also once deferred:
    Slurm tests dependencies before the begin time) was pinned and kept the only free hosts, which Slurm
    would not give it. It is skipped as a held job is; its deferral is renewed, so once the dependency is
    satisfied it comes back to the agent."""
    client = Fake([gang(1, nodes=16, reason=reason, priority=4294901758),
                   gang(2, nodes=16, priority=4294901757)])
    a = agent(tmp_path, client)
    res = a.cycle(now=1000.0)
    assert [s["job"] for s in res.started] == [2] and 1 not in res.waiting and res.pending == 1
    assert {c[1] for c in client.calls if c[2].get("ReqNodeList")} == {2}
    assert ("update", 1, {"StartTime": "now+60"}) in client.calls  # deferred, not pinned


def test_a_pinned_job_given_a_dependency_is_unpinned(tmp_path: Path) -> None:
    """Pinned, then given a dependency (scontrol update Dependency=...) before Slurm started it: the pin is
    cleared and the deferral renewed, recorded as agent.unpin with reason dependency; once the dependency
    is satisfied (reason cleared) the agent places it again."""
    now = time.time()
    dep = gang(1, req_nodes=("n1", "n2"), begin_time=now - 1, reason="Dependency", priority=9)
    client = Fake([dep, gang(2, nodes=16)], keep_pins=False)
    a = pinned_by(agent(tmp_path, client), [dep])
    res = a.cycle(now=now)
    assert res.unpinned == {1: "dependency"} and [s["job"] for s in res.started] == [2]
    assert client.calls[0] == ("update", 1, {"ReqNodeList": "", "StartTime": "now+60"})
    unpin = [e for e in events(tmp_path) if e["event"] == "agent.unpin"]
    assert [(e["job"], e["reason"]) for e in unpin] == [(1, "dependency")]
    client._jobs = [replace(dep, req_nodes=(), begin_time=now + 60, reason="BeginTime")]  # satisfied
    res = a.cycle(now=now + 1)
    assert [s["job"] for s in res.started] == [1] and not res.unpinned


@pytest.mark.parametrize("fields,blocked", [
    ({"priority": 0, "reason": "JobHeldUser"}, "held"),
    ({"priority": 0, "reason": "Dependency"}, "held"),  # held with a dependency: Slurm shows the hold
    ({"priority": 5, "reason": "Dependency"}, "dependency"),
    ({"priority": 5, "reason": "DependencyNeverSatisfied"}, "dependency"),
    ({"priority": None, "reason": "Dependency"}, "dependency"),
    ({"priority": 5, "reason": "BeginTime"}, None),
    ({"priority": 5, "reason": "Resources"}, None),
    ({"priority": 5, "reason": "Dependency", "state": "RUNNING"}, None),
    # updated (the agent's deferral): reason None until Slurm's next pass, the dependency text still there
    ({"priority": 5, "reason": "None", "dependency": "afterok:6(unfulfilled)"}, "dependency"),
    ({"priority": 5, "reason": "None", "dependency": ""}, None),  # satisfied: Slurm empties the text
])
def test_job_blocked(fields: dict, blocked: str | None) -> None:
    job = replace(gang(1), **fields)
    assert job.blocked == blocked
    says = fields["reason"].startswith("Dependency") or bool(job.dependency)
    assert job.dependent is (job.pending and says)


def test_the_backends_read_the_dependency_reason_alike() -> None:
    """Slurm's reason string as it is, from scontrol's Reason= (followed by Dependency=...), REST's
    state_reason and pyslurm's state_reason (live: test_client_contract.py::test_dependency_is_read)."""
    from fabric_hpc.slurm import decode
    from fabric_hpc.slurm.cli_backend import job_from_scontrol

    line = ("JobId=7 JobName=x JobState=PENDING Reason=Dependency Dependency=afterok:6(unfulfilled) "
            "Priority=4294901757 NumNodes=2 TresPerNode=gres/gpu:8")
    job = job_from_scontrol(line)
    assert (job.reason, job.dependency, job.blocked) == ("Dependency", "afterok:6(unfulfilled)", "dependency")
    none = line.replace("Dependency=afterok:6(unfulfilled)", "Dependency=(null)")
    assert job_from_scontrol(none).dependency == ""
    rec = {"job_id": 7, "job_state": ["PENDING"], "state_reason": "DependencyNeverSatisfied",
           "dependency": "afterok:6(failed)"}
    assert (decode.job(rec).dependency, decode.job(rec).blocked) == ("afterok:6(failed)", "dependency")
    assert decode.job({**rec, "state_reason": "None", "dependency": ""}).blocked is None


@pytest.mark.parametrize("deps,text", [
    (None, ""),
    ({"afterany": [], "afterok": ["6(unfulfilled)"], "singleton": False, "satisfy": "all"},
     "afterok:6(unfulfilled)"),
    ({"afterany": ["5(unfulfilled)"], "afterok": ["6(failed)"], "singleton": False, "satisfy": "any"},
     "afterany:5(unfulfilled)?afterok:6(failed)"),
    ({"afterok": [], "singleton": False, "satisfy": "all"}, "singleton"),  # singleton(unfulfilled): dropped
])
def test_pyslurm_dependencies_back_as_slurm_text(deps: dict | None, text: str) -> None:
    from types import SimpleNamespace

    from fabric_hpc.slurm.pyslurm_backend import _dependency

    assert _dependency(SimpleNamespace(dependencies=deps), "pyslurm job 7") == text


@pytest.mark.parametrize("reason,says", [
    ("Dependency", "while its dependency is unfulfilled"),
    ("DependencyNeverSatisfied", "only if its dependency is changed (scontrol update JobId=26 "
                                 "Dependency=...)"),
    ("JobHeldUser", "once it is released"),
])
def test_why_explains_a_blocked_fabric_job(tmp_path: Path, reason: str, says: str) -> None:
    """`fabric slurm why` for a held or dependent fabric job: Slurm's reason, that the agent keeps no GPUs
    for it and when it comes back; not "Slurm takes it over at" its deferral, nor an older policy reason."""
    from fabric_hpc.events import JsonLinesWriter, make_event
    from fabric_hpc.slurm.why import explain

    audit = JsonLinesWriter(tmp_path / "decisions.jsonl")
    audit.write(make_event("agent.waiting", jobs={"26": "Resources"}))
    audit.write(make_event("agent.unpin", job=26, reason="dependency"))
    job = gang(26, reason=reason, priority=0 if reason == "JobHeldUser" else 9, begin_time=time.time() + 60)

    class _One:
        def job(self, job_id: int) -> Job:
            return job

    text = explain(_One(), 26, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    assert "neither places it nor keeps GPUs for it" in text and says in text, text
    assert "cleared the pin it had set (dependency)" in text, text
    assert "takes it over" not in text and "policy said" not in text, text
