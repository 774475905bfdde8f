"""The placement agent: ``fabric agent run``.

Each cycle (every ``interval_s``, or at once when the job_submit plugin rewrites ``<state_dir>.plugin/wake``,
one line: the agent watches its modification time):

1. read nodes, jobs and reservations from Slurm (three calls; reservations where the client
   reads them, :class:`~fabric_hpc.slurm.contract.ReadsReservations`; the nodes once more where a node
   holds what no listed job does: a job ended between the reads, :func:`~.view_hosts.settled`) and build
   the view
   (:mod:`fabric_hpc.slurm.view`: tiers from QOS/partition by ``tier_map``, the QOS of a running job
   Slurm no longer shows as read while it was pending, :mod:`fabric_hpc.slurm.qos_store`; running jobs'
   last checkpoints under ``ckpt_root``);
2. charge the fairshare usage of the interval since the last cycle and save it
   (:mod:`fabric_hpc.slurm.usage`, ``<state_dir>/usage.json``); take the usage from Slurm's accounting
   (``sshare``) or that ledger (``usage_source``, :mod:`fabric_hpc.slurm.usage_source`), then run the
   scheduler policy (:func:`fabric_hpc.scheduler.fabric_policy`: the simulator's code) with it;
3. write every decision of the cycle to the audit log (one write, one fsync; rotated at 64 MiB)
   *before* acting: the requeues, the starts and the waiting reasons; then (:meth:`Actions.apply`)
   clear the pins of jobs held or given a dependency since, requeue the spot victims (clearing
   their pins), pin each started job to exactly its hosts (``ReqNodeList`` with ``-N`` names,
   ``StartTime=now``: one ``scontrol update``), and hand over the jobs fabric cannot place
   (``ReqNodeList= StartTime=now``) only in a cycle that pinned nothing; a start with a wrong host
   count fails the cycle before anything is written or sent; a refused action gets its
   ``agent.failed`` record after, and only what Slurm accepted is counted (docs/metrics.md);
4. renew the deferral of jobs still waiting (``StartTime=now+fallback``; each job's renewal
   independent of the others') and write the heartbeat.

A restarted agent rebuilds what it needs from Slurm, its usage, deferrals and QOS files (a job it
pinned before dying is seen as pinned, never placed twice; a begin time it set is its own, not a
--begin); a dead one stops renewing deferrals, so after ``fallback_s`` Slurm's own scheduler takes the
jobs over. One agent per state directory (``flock`` on ``agent.lock``); a second agent on the cluster
with another state directory is reported (``agent.other_agent``, :mod:`fabric_hpc.slurm.other_agent`).

Errors: what is wrong before the first cycle (a bad flag, another agent on the state directory, a
metrics port it cannot serve, no answer from Slurm within ``contact_timeout_s``) fails ``fabric agent
run`` at once with one line (``agent.stop`` with ``reason: "error"``). Once running, any exception of
a cycle (Slurm down, an unexpected answer, a bug) is an ``agent.error`` event (bounded text, counted
in ``fabric_agent_errors_total`` and ``status.json``), and the next cycle waits an exponential
backoff (0.25 s doubling up to ``max_backoff_s``). SIGTERM/SIGINT stop it; SIGHUP reopens its logs
before the next cycle (logrotate; the settings are read only at start: a restart applies a changed
config).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ExternalError
from fabric_hpc.events import emit, emit_event, make_event
from fabric_hpc.scheduler import DEFAULT_TIERS, SchedulingPolicy, make_policy
from fabric_hpc.scheduler.apply import Cadence, apply_decisions, snapshot
from fabric_hpc.scheduler.contract import PreemptingPolicy
from fabric_hpc.slurm.actions import Actions, Applied
from fabric_hpc.slurm.agent_config import AgentConfig  # noqa: F401 (where callers import it from)
from fabric_hpc.slurm.agent_daemon import AgentDaemon
from fabric_hpc.slurm.agent_support import (  # noqa: F401 (re-exported: callers import them from here)
    agent_lock, bounded, check_state_dir, compact_holds, first_contact, agent_settings, gpu_mismatch,
    heartbeat_text, model_overlap, read_status, reserved_facts, withdraw_pins, write_heartbeat)
from fabric_hpc.slurm.audit import WaitingLog, audit_writer, cycles_writer, waiting_records
from fabric_hpc.slurm.contract import Job, Node, ReadsReservations, SlurmClient, SlurmError
from fabric_hpc.slurm.decode import gc_paused
from fabric_hpc.slurm.deferral_store import DeferralStore
from fabric_hpc.slurm.metrics import gpu_counts
from fabric_hpc.slurm.parse import RUNNING_STATES
from fabric_hpc.slurm.other_agent import OtherAgentWatch
from fabric_hpc.slurm.qos_store import QosMemory
from fabric_hpc.slurm.sdnotify import notify
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.blocks import BlockSource
from fabric_hpc.slurm.usage_source import UsageSource, command_client
from fabric_hpc.slurm.view import Inputs, PinRules, View, build_view, handoff_exclusions
from fabric_hpc.slurm.view_hosts import settled, unexplained
from fabric_hpc.topology import Fabric
from fabric_hpc.topology.io import model_digest


@dataclass
class CycleResult:
    started: list[dict[str, Any]] = field(default_factory=list)  # decided (the agent.place records)
    requeued: list[int] = field(default_factory=list)  # decided victims
    placed: list[dict[str, Any]] = field(default_factory=list)  # the starts whose pin Slurm accepted
    requeues_done: list[int] = field(default_factory=list)  # the victims Slurm requeued
    deferred: list[int] = field(default_factory=list)
    unpinned: dict[int, str] = field(default_factory=dict)  # blocked job -> held/dependency: pin cleared
    waiting: dict[int, str] = field(default_factory=dict)
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent_support.compact_holds
    reserved: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent_support.reserved_facts
    pending: int = 0
    seconds: float = 0.0
    read_s: float = 0.0
    policy_s: float = 0.0


class Agent(AgentDaemon):
    """One placement agent bound to a Slurm client, a fabric model and a state directory."""

    def __init__(self, client: SlurmClient, fab: Fabric, config: AgentConfig, *,
                 policy: SchedulingPolicy | None = None) -> None:
        self.client, self.fab, self.config = client, fab, config
        #: the model it places on, for `fabric agent check` (status.json ``model``: read at start only)
        self.model = {"digest": model_digest(fab), "hosts": len(fab.hosts)}
        self.state_dir = Path(config.state_dir)
        check_state_dir(self.state_dir)
        self.policy = policy or make_policy(config.policy, **_policy_options(config))
        self.inputs = Inputs(tiers=TierMap.parse(config.tier_map), ckpt_root=config.ckpt_root)
        self.usage = AgentUsage(self.state_dir)
        self._notes: list[dict[str, Any]] = []  # this cycle's audit records, written with its decisions
        #: the Slurm commands outside the client (sshare, scontrol show config/topology; sacctmgr at start,
        #: within contact_timeout_s): stop() interrupts them with the client
        self.commands = command_client(client)
        self.start_commands = command_client(client, config.contact_timeout_s)
        self.usage_source = UsageSource(config.usage_source, self.usage, self.commands.run, self._note)
        self.blocks = BlockSource(fab, self.commands.run, self._note)  # Slurm's topology/block
        self.cadence = Cadence(config.backfill_interval_s)
        self.audit = audit_writer(self.state_dir)  # read by `fabric slurm why` and `fabric slurm report`
        self.waiting_log = WaitingLog()
        self.cycles_log = cycles_writer(self.state_dir) if config.record_cycles else None
        self.actions = Actions(client, self._note)
        self.deferral_store = DeferralStore(self.state_dir)  # its deferrals across restarts
        self.qos_memory = QosMemory(self.state_dir)  # the QOS of jobs Slurm forgets once they run
        self.lock = agent_lock(self.state_dir)
        #: a second agent with another --state-dir (agent.other_agent)
        self.other_agent = OtherAgentWatch()
        self.metrics: Any = None
        self._stop = threading.Event()
        self.actions.stopping = self._stop.is_set  # requests the stop abandons are not failed actions
        self._reopen = threading.Event()  # SIGHUP: reopen the logs (logrotate) before the next cycle
        self._wake_mtime = 0.0
        self.cycles = 0
        self.errors = 0  # cycles that failed since the start
        self.last_error: str | None = None  # the last failed cycle's or action's error
        self._status: dict[str, Any] = {"cycles": 0}
        self._ignored_resv: dict[str, str] = {}  # the reservations left out last cycle (noted on change)

    # -- one cycle ---------------------------------------------------------------------------
    @gc_paused()  # a cycle's records (thousands of jobs, their view) make no cycles: see gc_paused
    def cycle(self, now: float | None = None) -> CycleResult:
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        nodes, jobs = self.client.nodes(), self.client.jobs()
        if unexplained(nodes, jobs):  # a job ended between the reads (or one is hidden): read the nodes again
            nodes = settled(nodes, self.client.nodes())
        jobs = self.qos_memory.fill(jobs)  # 25.11 without slurmdbd shows no QOS of a running job
        resvs = self.client.reservations() if isinstance(self.client, ReadsReservations) else None
        t_read = time.perf_counter()
        view = self._view(nodes, jobs, resvs, now)
        usage = self.usage_source.usage(now, view.held)
        res = CycleResult(pending=len(view.candidates))
        pending = {p.job.id: p for p in view.pending}
        running = {r.job.id: r for r in view.running}
        step_in = snapshot(now, pending, running, view.state, usage, backfill=self.cadence.backfill(now),
                           shares=self.usage_source.shares)
        decisions = self.policy.schedule(step_in)
        # the drivers' own application, on a copy: a decision that does not fit the snapshot fails
        # here (the cycle's error), before Slurm is touched
        apply_decisions(decisions, now, view.state.copy(), dict(pending), dict(running))
        if self.config.record_cycles:
            self._record(step_in, decisions)
        res.policy_s = time.perf_counter() - t_read
        res.requeued = [int(p.job_id) for p in decisions.preempt]
        res.started = [self._pin_entry(view, int(job.id), placement) for job, placement in decisions.start]
        started = {s["job"] for s in res.started}
        for job_id, job in view.candidates.items():
            if job_id in started or job_id in self.actions.handed_off:
                continue
            res.waiting[job_id] = decisions.reasons.get(str(job_id), "Resources")
            if job.begin_time is None or job.begin_time - now < self.config.fallback_s / 2:
                res.deferred.append(job_id)
        res.waiting.update(dict.fromkeys(view.not_before, "BeginTime"))  # placed once that time comes
        withdraw_pins(view.withdrawn, res)  # a lower tier's unstarted pin the policy placed anew
        res.holds = compact_holds(self.policy, self.fab, pending, res.waiting)
        res.reserved = reserved_facts(decisions.reservations, view.running, res.waiting)
        self._blocked(view, res, now)
        self._write_ahead(decisions, res, now)
        try:
            done = self.actions.apply(res.requeued, res.started, view.invalid, res.deferred,
                                      self.config.fallback_s, unpin=res.unpinned,
                                      kept_out=handoff_exclusions(nodes, jobs), waits=view.not_before,
                                      victims_for={int(p.job_id): int(p.for_job) for p in decisions.preempt})
        except SlurmError:
            if self._stop.is_set():  # a request the stop abandoned ends the cycle: what was done is kept
                self._keep()
            raise
        self._accepted(res, done)
        self._keep()
        res.read_s, res.seconds = t_read - t0, time.perf_counter() - t0
        self._finish(res, view)
        return res

    def _keep(self) -> None:
        """What the cycle's actions did, on disk: their notes (failures, hand-overs; a second audit write
        only then), the begin times Slurm accepted (``deferrals.json``: a restarted agent tells them
        from a user's ``--begin``) and the QOS memory."""
        if self._notes:
            events, self._notes = self._notes, []
            self.audit.write_many(events)
        self.deferral_store.save(self.actions)
        self.qos_memory.save()

    def _view(self, nodes: list[Node], jobs: list[Job], resvs: Any, now: float) -> View:
        """The cycle's view of Slurm's answers, with what the agent remembers applied (its own deferrals,
        pins, hand-overs, refused requeues) and its actions' bookkeeping brought up to date."""
        self.actions.recognise(jobs)  # its own deferrals, Slurm's error answer notwithstanding
        if warning := self.other_agent.check(jobs, self.actions.asked, now, self.actions.requeued):
            self._note("other_agent", **warning)
        tiers, preempts = DEFAULT_TIERS, self.config.preemption
        if isinstance(self.policy, PreemptingPolicy):  # the slurm policy never preempts
            tiers, preempts = self.policy.tiers, preempts and self.policy.preemption is not None
        pins = PinRules(self.config.pin_timeout_s, self.actions.handed_off, self.actions.avoid,
                        fallback_s=self.config.fallback_s, deferrals=self.actions.deferrals,
                        waits=self.actions.waits, requeued=self.actions.requeued,
                        preemption=preempts, tiers=tiers, own=self.actions.pins)
        view = build_view(self.fab, nodes, jobs, now=now, inputs=self.inputs, pins=pins, reservations=resvs,
                          blocks=self.blocks.layout())
        if view.ignored_reservations != self._ignored_resv:  # Slurm records fabric cannot trust, said once
            self._ignored_resv = view.ignored_reservations
            if self._ignored_resv:
                self._note("reservations_ignored", reservations=self._ignored_resv)
        started = {j.job_id: j.start_time for j in jobs if j.state in RUNNING_STATES and j.start_time}
        self.actions.forget([j.job_id for j in jobs if j.pending], [j.job_id for j in jobs if j.active],
                            started)
        if refused := self.actions.unrequeueable:  # requeues Slurm refused: no victims again while they run
            ids = {str(j) for j in refused}  # running ids are text (``slurm:cpus:HOST``, too)
            view.running = [replace(r, preemptible=False) if r.job.id in ids else r for r in view.running]
        self.actions.foreign(view.foreign)  # someone else's ReqNodeList: kept
        self.actions.stale(view.stale)
        self.actions.rejected(view.rejected, self.fab)
        self.actions.limited(view.limited)
        self.actions.own_begins(view.own_begins)  # a hand-over keeps a begin time of the job's own
        view.drop(self.actions.handed_off)  # handed over just now (a third stale pin)
        return view

    def _blocked(self, view: View, res: CycleResult, now: float) -> None:
        """Held jobs and jobs waiting on a dependency are not placed; their deferral is kept up (released,
        or its dependency satisfied, the job comes back to the agent, not straight to Slurm), and a pin
        set before is cleared (with the deferral, one update)."""
        for job_id, job in view.blocked.items():
            if job.req_nodes:
                res.unpinned[job_id] = job.blocked or "held"
            elif job.begin_time is None or job.begin_time - now < self.config.fallback_s / 2:
                res.deferred.append(job_id)

    def _accepted(self, res: CycleResult, done: Applied) -> None:
        """What Slurm accepted of the cycle's actions: the pins and requeues the metrics count (a
        refused one has its ``agent.failed`` record after the decision's)."""
        placed = set(done.placed)
        res.placed = [s for s in res.started if s["job"] in placed]
        res.requeues_done = list(done.requeued)

    def _pin_entry(self, view: View, job_id: int, placement: Any) -> dict[str, Any]:
        """The ``agent.place`` record of a start (checked: exactly ``-N`` hosts)."""
        job = view.candidates[job_id]
        hosts = list(placement.hosts)
        if len(hosts) != job.nodes:  # Slurm silently accepts a longer list: never send one
            raise ExternalError(f"job {job_id}: placement chose {len(hosts)} hosts for -N {job.nodes}")
        return {"job": job_id, "hosts": hosts, "gpus": list(placement.gpus), "cost": placement.cost,
                "domains": placement.domains, "solver": placement.solver, "breakdown": placement.breakdown}

    def _write_ahead(self, decisions: Any, res: CycleResult, now: float) -> None:
        """Every decision of the cycle on disk (one write, one fsync) before any is sent to Slurm, and
        on the event stream (``-v``): the requeues, the starts, the pins cleared. A decision Slurm then
        refuses gets its ``agent.failed`` record after it. Hand-overs are recorded when done
        (:meth:`Actions.apply`); the waiting reasons when they change
        (:class:`~fabric_hpc.slurm.audit.WaitingLog`)."""
        events, self._notes = self._notes, []
        fresh = [make_event("agent.requeue", job=int(p.job_id), for_job=int(p.for_job),
                            gpu_hours_lost=p.gpu_hours_lost) for p in decisions.preempt]
        fresh += [make_event("agent.place", **entry) for entry in res.started]
        fresh += [make_event("agent.unpin", job=job_id, reason=why) for job_id, why in res.unpinned.items()]
        if res.waiting and self.waiting_log.due(res.waiting, now, res.reserved):
            # holds: until when, and where, a gang is held; reserved: when, where a gang is to start
            fresh += [make_event("agent.waiting", **part)
                      for part in waiting_records(res.waiting, res.holds, res.reserved)]
        for event in fresh:
            emit_event(event)
        if events or fresh:
            self.audit.write_many(events + fresh)

    def _record(self, step_in: Any, decisions: Any) -> None:
        from fabric_hpc.scheduler.record import decisions_digest, input_to_dict

        if self.cycles_log is not None:
            self.cycles_log.write({"input": input_to_dict(step_in), "decisions": decisions_digest(decisions)})

    def _log(self, what: str, **fields: Any) -> None:
        """An ``agent.<what>`` record written now (audit log) and sent to the event stream (one record)."""
        event = make_event(f"agent.{what}", **fields)
        self.audit.write(event)
        emit_event(event)

    def _note(self, what: str, **fields: Any) -> None:
        """An ``agent.<what>`` record for the event stream now and the audit log with the cycle's
        decisions (or with its error record): still one write and one fsync per cycle. Both copies are
        the same record (the same ``ts``)."""
        event = make_event(f"agent.{what}", **fields)
        self._notes.append(event)
        emit_event(event)

    def _finish(self, res: CycleResult, view: View) -> None:
        self.cycles += 1
        self._status = {"pid": os.getpid(), "ts": time.time(), "cycles": self.cycles, "cycle_s": res.seconds,
                        "read_s": res.read_s, "policy_s": res.policy_s, "pending": res.pending,
                        "pinned": len(view.pinned), "started": [s["job"] for s in res.started],
                        "requeued": res.requeued, "waiting": {str(k): v for k, v in res.waiting.items()},
                        "reserved": res.reserved,
                        "utilisation": _utilisation(view), "backend": self.client.backend,
                        "missing_hosts": len(view.missing), "upcoming_reservations": len(view.upcoming),
                        **self.usage_source.status()}
        if self.other_agent.last is not None:
            self._status["other_agent"] = self.other_agent.last
        self._write_status()
        now = time.time()  # the agent's own record (fabric agent status), then the plugin's
        write_atomic(self.state_dir / "heartbeat", heartbeat_text(now), mode=0o644, durable=False)
        write_heartbeat(self.state_dir, now)
        if self.metrics is not None:
            self.metrics.observe(res, view)
            self.metrics.usage_from_slurm.set(1 if self.usage_source.active == "slurm" else 0)
        emit("agent.cycle", seconds=res.seconds, pending=res.pending, started=len(res.started))
        notify(f"STATUS=cycle {self.cycles}: {res.pending} pending, {len(res.started)} started, "
               f"{len(res.requeued)} requeued")

    def _write_status(self, **extra: Any) -> None:
        """``status.json`` (read by `fabric agent status`), after every cycle, good or failed: the last
        good cycle's numbers, the failed cycles and actions, the last error. Not fsync'd."""
        status = {**self._status, "pid": os.getpid(), "ts": time.time(), "fallback_s": self.config.fallback_s,
                  "errors": self.errors, "failed_actions": self.actions.failed_total,
                  "last_error": self.last_error, "last_action_error": self.actions.last_error,
                  "tier_map": list(self.config.tier_map), "settings": agent_settings(self.config),
                  "model": self.model, **extra}
        write_atomic(self.state_dir / "status.json", json.dumps(status), mode=0o644, durable=False)


def _utilisation(view: View) -> float:
    """Allocated GPUs / GPUs up, as ``fabric_agent_gpus_alloc_ratio`` (a draining node's count)."""
    up, alloc = gpu_counts(view)
    return alloc / up if up else 0.0


def _policy_options(config: AgentConfig) -> dict[str, Any]:
    if config.policy != "fabric":
        return {}
    opts: dict[str, Any] = {"placement": config.placement, "preemption": config.preemption}
    if config.compact_wait_s is not None:
        opts["compact_wait_s"] = config.compact_wait_s
    if config.preempt_benefit_ratio is not None:
        opts["preempt_benefit_ratio"] = config.preempt_benefit_ratio
    return opts
