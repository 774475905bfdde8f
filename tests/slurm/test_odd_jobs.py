"""Jobs fabric must leave alone or wait for (prober's odd jobs): job arrays and heterogeneous jobs are never
fabric jobs (job_submit.lua neither marks them nor accepts a fabric comment on them; the agent ignores them
in all three backends' answers), a refused hand-over is given up after a few tries, a begin time that is no
fabric deferral (--begin, Slurm's requeue delay) is waited for, and `fabric slurm why` says so.
Live: tests/slurm_integration/test_odd_jobs_live.py."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from fabric_hpc.slurm.actions import MAX_PIN_FAILURES
from fabric_hpc.slurm.contract import Job, SlurmError
from fabric_hpc.slurm.plugins import lua_string, render_job_submit
from fabric_hpc.slurm.view import PinRules, build_view
from tests.real import require_real
from tests.slurm.test_agent_actions import FAB, Fake, agent, events
from tests.slurm.test_job_submit_lua import LUA, run_cases

NO_VAL = 4294967294


def gang(job_id: int, **kw) -> Job:
    fields = {"name": f"g{job_id}", "state": "PENDING", "comment": "fabric", "nodes": 2, "gpus_per_node": 8,
              "submit_time": float(job_id), **kw}
    return Job(job_id=job_id, **fields)

# -- job_submit.lua -----------------------------------------------------------------------------


def test_lua_does_not_mark_arrays_or_het_jobs_and_refuses_a_fabric_comment_on_them(tmp_path: Path) -> None:
    """`sbatch --array=0-7 -N2 --gres=gpu:8` was marked: the agent pinned the array's record, Slurm gave
    every task that ReqNodeList and ran them one at a time on two hosts. Het components likewise."""
    gang2 = {"min_nodes": 2, "tres_per_node": "gres:gpu:8"}
    rows = run_cases(tmp_path, [
        {**gang2, "array_inx": "0-7"},                        # a GPU gang array: Slurm's, untouched
        {**gang2, "array_inx": "0-7", "comment": "fabric"},   # asked: refused with what to do
        {**gang2, "het_job_offset": 0},                       # het leader
        {**gang2, "het_job_offset": 1, "comment": "fabric:within=leaf"},
        {**gang2, "het_job_offset": NO_VAL},                  # a plain job: marked as before
        {**gang2, "array_inx": "", "comment": "fabric"},
    ])
    assert [(rc, comment) for rc, comment, _ in rows] == [
        ("0", "nil"), ("-1", "fabric"), ("0", "nil"), ("-1", "fabric:within=leaf"), ("0", "fabric"),
        ("0", "fabric")]
    assert "job array (--array)" in rows[1][2] and "submit the tasks as separate jobs" in rows[1][2]
    assert "drop --comment=fabric" in rows[1][2]
    assert "heterogeneous job" in rows[3][2]


def test_lua_names_gpus_per_task_and_total_gpus_it_does_not_read(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [
        {"min_nodes": 2, "tres_per_task": "gres/gpu=4", "comment": "fabric"},  # 25.11: slurm_opt.c
        {"min_nodes": 2, "tres_per_job": "gres/gpu:16", "comment": "fabric"},
        {"min_nodes": 2, "comment": "fabric"},
    ])
    assert [r[0] for r in rows] == ["-1"] * 3
    assert "--gpus-per-task (GPUs per task or in all) is not read" in rows[0][2]
    assert "--gpus (GPUs per task or in all) is not read" in rows[1][2]
    for said in rows[:2]:
        assert "--gpus-per-node=N or --gres=gpu:N" in said[2]
    assert "add --gres=gpu:N (or --gpus-per-node=N)" in rows[2][2]


def _begin_times(tmp_path: Path, begins: list[int]) -> list[int]:
    """The begin time the plugin leaves for gangs submitted with these begin times (fresh heartbeat)."""
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    from fabric_hpc.slurm.plugins import plugin_dir

    state = tmp_path / "agent"
    state.mkdir()
    plugin_dir(state).mkdir()  # the plugin reads the heartbeat there (root's directory, made by install)
    (plugin_dir(state) / "heartbeat").write_text(f"{int(time.time())}\nprotocol=1\n")
    plugin = tmp_path / "job_submit.lua"
    plugin.write_text(render_job_submit(state_dir=str(state)))
    script = tmp_path / "begin.lua"
    head = f"PLUGIN = {lua_string(str(plugin))}\nBEGINS = {{{', '.join(map(str, begins))}}}\n"
    script.write_text(head + r"""
slurm = {SUCCESS = 0, ERROR = -1}
function slurm.log_user(fmt, ...) end
function slurm.log_info(fmt, ...) end
dofile(PLUGIN)
for _, b in ipairs(BEGINS) do
  local job = {min_nodes = 2, tres_per_node = "gres:gpu:8", begin_time = b}
  assert(slurm_job_submit(job, {}, 1000) == 0)
  io.write(job.begin_time, "\n")
end
""")
    out = subprocess.run([LUA, str(script)], capture_output=True, text=True, timeout=60, check=True).stdout
    return [int(x) for x in out.split()]


def test_lua_keeps_a_users_begin_and_defers_the_others(tmp_path: Path) -> None:
    """A --begin shorter than the fallback became now + fallback: the agent took it for its own deferral
    and started the job before the user's time. Now a begin still ahead is kept as given."""
    now = int(time.time())
    got = _begin_times(tmp_path, [0, now - 100, now + 20, now + 600])
    assert now + 60 <= got[0] <= now + 62 and now + 60 <= got[1] <= now + 62  # fabric's deferral
    assert got[2:] == [now + 20, now + 600]


# -- reading array/het ids ------------------------------------------------------------------------


def test_the_three_backends_read_array_and_het_ids() -> None:
    from fabric_hpc.slurm import decode
    from fabric_hpc.slurm.cli_backend import job_from_scontrol
    from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm

    rec = {"job_id": 12, "job_state": ["PENDING"], "comment": "fabric", "tres_per_node": "gres/gpu:8",
           "node_count": 2}
    assert decode.job({**rec, "array_job_id": 0, "het_job_id": 0}).grouped is None
    assert decode.job({**rec, "array_job_id": 0, "het_job_id": 0}).fabric_marked
    j22 = decode.job({**rec, "array_job_id": 12, "array_task_id": None, "het_job_id": 0})  # 22.05: numbers
    j25 = decode.job({**rec, "array_job_id": {"set": True, "infinite": False, "number": 11},
                      "het_job_id": {"set": True, "infinite": False, "number": 0}})  # 25.11: objects
    het = decode.job({**rec, "array_job_id": 0, "het_job_id": 10})
    assert (j22.grouped, j25.grouped, het.grouped) == ("array", "array", "het")
    assert not (j22.fabric_marked or j25.fabric_marked or het.fabric_marked)
    assert j22.fabric_comment and j22.fabric_options == ""
    line = ("JobId=13 ArrayJobId=12 ArrayTaskId=1 JobName=x JobState=PENDING Reason=None Comment=fabric "
            "NumNodes=2 TresPerNode=gres/gpu:8")
    assert job_from_scontrol(line).array_job_id == 12 and not job_from_scontrol(line).fabric_marked
    het_line = line.replace("ArrayJobId=12 ArrayTaskId=1", "HetJobId=13 HetJobOffset=0")
    assert job_from_scontrol(het_line).grouped == "het"
    with pytest.raises(SlurmError, match="ArrayJobId"):
        job_from_scontrol(line.replace("ArrayJobId=12", "ArrayJobId=x"))
    fields = dict(id=13, state="PENDING", allocated_nodes=None, gres_per_node={"gpu": 8}, eligible_time=None,
                  start_time=None, time_limit=None, name="g", state_reason="None", comment="fabric",
                  user_name="u",
                  partition="debug", account="a", qos="normal", num_nodes=2, required_nodes=None,
                  excluded_nodes=None, submit_time=1, priority=1, dependencies=None, cpus=10,
                  reservation=None)
    plain = job_from_pyslurm(SimpleNamespace(**fields, array_id=None, heterogeneous_id=None))
    task = job_from_pyslurm(SimpleNamespace(**fields, array_id=12, heterogeneous_id=None))
    comp = job_from_pyslurm(SimpleNamespace(**fields, array_id=None, heterogeneous_id=13))
    assert (plain.grouped, task.grouped, comp.grouped) == (None, "array", "het")


def test_the_agent_ignores_array_and_het_jobs(tmp_path: Path) -> None:
    array = gang(5, array_job_id=5)  # the array's pending record
    comp = gang(7, het_job_id=6)
    running = gang(8, array_job_id=5, state="RUNNING", node_list=("n1", "n2"), gpus={"n1": tuple(range(8)),
                                                                                       "n2": tuple(range(8))})
    client = Fake([array, comp, running, gang(9)])
    a = agent(tmp_path, client)
    a.cycle()
    touched = {j for _, j, _ in client.calls}
    assert touched == {9}, client.calls  # only the plain gang is pinned, not on the array task's hosts
    [pin] = [f["ReqNodeList"] for _, j, f in client.calls if j == 9]
    assert "n1" not in pin.split(",") and pin != "n[1-2]"


# -- hand-overs Slurm refuses ---------------------------------------------------------------------


def test_a_refused_hand_over_is_given_up_after_a_few_and_recorded_once(tmp_path: Path) -> None:
    """A het leader's hand-over was refused and retried (and fsync'd) every cycle for ever."""

    class Refusing(Fake):
        def update(self, job_id: int, **fields: str) -> None:
            if fields.get("StartTime") == "now" and not fields.get("ReqNodeList"):
                self.calls.append(("update", job_id, fields))
                raise SlurmError("Job resizing not supported for job arrays")
            super().update(job_id, **fields)

    now = time.time()
    bad = Job(job_id=4, name="bad", state="PENDING", comment="fabric:within=rack", nodes=2, gpus_per_node=8,
              submit_time=now, begin_time=now + 60)
    client = Refusing([bad])
    a = agent(tmp_path, client)
    for _ in range(MAX_PIN_FAILURES + 4):
        a.cycle()
    handoffs = [f for _, j, f in client.calls if j == 4 and f.get("StartTime") == "now"]
    assert len(handoffs) == MAX_PIN_FAILURES
    log = events(tmp_path)
    [gave_up] = [e for e in log if e["event"] == "agent.handoff_abandoned"]
    assert gave_up["job"] == 4 and gave_up["count"] == MAX_PIN_FAILURES and "resizing" in gave_up["error"]
    assert sum(e["event"] == "agent.failed" for e in log) == MAX_PIN_FAILURES
    assert a.actions.failed_total == MAX_PIN_FAILURES


# -- begin times that are no fabric deferral ------------------------------------------------------


def test_pin_rules_tell_fabric_deferrals_from_other_begin_times() -> None:
    rules = PinRules(fallback_s=60, deferrals={3: 1_500.0})
    now = 1_000.0
    assert rules.not_before(gang(1, submit_time=990.0, begin_time=1_050.0), now) is None   # the plugin's
    assert rules.not_before(gang(2, submit_time=990.0, begin_time=1_051.5), now) is None   # a second late
    assert rules.not_before(gang(3, submit_time=900.0, begin_time=1_500.0), now) is None   # the agent's
    assert rules.not_before(gang(4, submit_time=990.0, begin_time=1_120.0), now) == 1_120.0  # --begin
    assert rules.not_before(gang(5, submit_time=990.0, begin_time=1_020.0), now) == 1_020.0  # shorter one
    assert rules.not_before(gang(6, submit_time=990.0, begin_time=999.0), now) is None     # eligible
    assert rules.not_before(gang(8, submit_time=990.0, begin_time=1_000.4), now) == 1_000.4  # not yet
    assert PinRules().not_before(gang(7, submit_time=990.0, begin_time=1_120.0), now) is None  # not told


def test_a_begin_time_of_the_user_is_waited_for_then_the_job_is_placed(tmp_path: Path) -> None:
    """`--begin=now+120`: the agent pinned it and sent StartTime=now at once; a 22.05 requeue (begin set
    to now + the requeue delay) was re-pinned 0.1 s later and killed (credential revoked)."""
    now = time.time()
    user = gang(1, submit_time=now, begin_time=now + 120)
    requeued = gang(2, submit_time=now, begin_time=now + 121, req_nodes=("n3", "n4"))
    client = Fake([user, requeued])
    a = agent(tmp_path, client)
    a.actions.pins[2] = frozenset(requeued.req_nodes)  # the agent's pin, kept by the requeue
    res = a.cycle(now=now + 1)
    assert res.waiting == {1: "BeginTime", 2: "BeginTime"} and not res.started
    # taken over: deferred to the begin time + fallback_s (Slurm would start it anywhere at that time)
    taken = {j: int(f["StartTime"].removeprefix("now+")) for _, j, f in client.calls}
    assert set(taken) == {1, 2} and 179 <= taken[1] <= 180 and 180 <= taken[2] <= 181, client.calls
    assert a.actions.waits == {1: now + 120, 2: now + 121}
    a.cycle(now=now + 2)
    assert len(client.calls) == 2  # once per job and begin time
    v = build_view(FAB, client.nodes(), client.jobs(), now=now + 1, pins=PinRules(fallback_s=60))
    assert set(v.not_before) == {1, 2} and not v.pinned and v.state.utilisation() == 0
    client._jobs = [replace(j, begin_time=time.time() + taken[j.job_id]) for j in client._jobs]
    v = build_view(FAB, client.nodes(), client.jobs(), now=now + 60,
                   pins=PinRules(fallback_s=60, deferrals=a.actions.deferrals, waits=a.actions.waits))
    assert v.not_before == {1: now + 120, 2: now + 121}  # the agent's deferral now, the user's time still
    a.cycle(now=now + 125)  # that time has come: both placed, eligible now (StartTime=now)
    assert [(j, f["StartTime"]) for _, j, f in client.calls if f.get("ReqNodeList")] == [(1, "now"), (2, "now")]
    assert [e["event"] for e in events(tmp_path)].count("agent.waiting") >= 1


def test_the_agents_own_deferral_is_no_begin_time_to_wait_for(tmp_path: Path) -> None:
    """A job the agent deferred (its renewal: now + fallback_s) is placed as soon as hosts are free."""

    class Deferring(Fake):
        def update(self, job_id: int, **fields: str) -> None:
            super().update(job_id, **fields)
            if fields.get("StartTime", "").startswith("now+"):
                until = time.time() + int(fields["StartTime"][4:])
                self._jobs = [replace(j, begin_time=until) if j.job_id == job_id else j for j in self._jobs]

    now = time.time()
    busy = Job(job_id=1, name="big", state="RUNNING", nodes=16, gpus_per_node=8,
               node_list=tuple(f"n{i}" for i in range(1, 17)),
               gpus={f"n{i}": tuple(range(8)) for i in range(1, 17)})
    waiting = gang(2, submit_time=now - 50, begin_time=now + 10)  # the plugin's deferral, 10 s left
    client = Deferring([busy, waiting])
    a = agent(tmp_path, client)
    a.cycle()
    assert [(j, f) for _, j, f in client.calls] == [(2, {"StartTime": "now+60"})]
    assert 2 in a.actions.deferrals
    client._jobs = [j for j in client._jobs if j.job_id != 1]  # the big job ended
    a.cycle()
    assert [j for _, j, f in client.calls if f.get("ReqNodeList")] == [2]


def test_the_agents_own_victim_waits_a_few_seconds_not_slurms_requeue_delay() -> None:
    """A spot gang the agent requeued gets Slurm's requeue delay (121 s by default) as its begin time;
    the agent places it again after REQUEUE_GAP_S (a later second than the revocation), not at once."""
    from fabric_hpc.slurm.actions import Actions
    from fabric_hpc.slurm.view import REQUEUE_GAP_S

    client = Fake([])
    actions = Actions(client, lambda what, **kw: None)
    actions.pins[5] = frozenset({"n1", "n2"})  # the agent's pin, which the requeue keeps
    actions.apply([5], [], {}, [], 60)
    t = actions.requeued[5]
    assert client.calls == [("requeue", 5, {}), ("update", 5, {"ReqNodeList": ""})]
    victim = gang(5, submit_time=t, begin_time=t + 121)  # Slurm: now + requeue_delay + 1
    rules = PinRules(fallback_s=60, requeued=actions.requeued)
    assert rules.not_before(victim, t + 1) == t + REQUEUE_GAP_S
    assert rules.not_before(victim, t + REQUEUE_GAP_S + 0.1) is None
    assert PinRules(fallback_s=60).not_before(victim, t + 10) == t + 121  # a user's requeue: waited for
    actions.forget([])  # not pending while Slurm tears it down: still remembered
    assert 5 in actions.requeued


# -- fabric slurm why ------------------------------------------------------------------------------


class _One:
    def __init__(self, job: Job) -> None:
        self._job = job

    def job(self, job_id: int) -> Job:
        return self._job

    def nodes(self) -> list:  # why reads the pinned hosts of a ReqNodeNotAvail job (memory, --exclusive)
        return []


@pytest.mark.parametrize("reason,says", [
    ("Reservation", "waits for its reservation, and may start only on the reservation's nodes"),
    ("ReqNodeNotAvail,_May_be_reserved_for_other_job", "unavailable to it (down, drained, or reserved"),
])
def test_why_says_slurm_refuses_the_pinned_hosts(tmp_path: Path, reason: str, says: str) -> None:
    from fabric_hpc.slurm.why import explain

    job = gang(26, reason=reason, req_nodes=("n1", "n2"), begin_time=time.time() - 5)
    text = explain(_One(job), 26, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    assert "Slurm does not start it there" in text and says in text and "pin_timeout_s" in text, text
    assert "as soon as those GPUs are free" not in text, text


def test_why_names_an_array_task_and_refuses_array_syntax(tmp_path: Path) -> None:
    from fabric_hpc.cli.main import cli
    from fabric_hpc.slurm.why import explain

    job = gang(13, array_job_id=12, state="RUNNING", node_list=("n1", "n2"))
    text = explain(_One(job), 13, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    assert "a task of job array 12" in text and "places no job arrays" in text, text
    cases = (("1_3", "an array task"), ("7+1", "heterogeneous job's component"), ("x1", "not a job id"))
    for arg, what in cases:
        res = CliRunner().invoke(cli, ["slurm", "why", arg])
        assert res.exit_code == 2 and what in res.output, res.output
    assert "scontrol show job 1_3" in CliRunner().invoke(cli, ["slurm", "why", "1_3"]).output
