"""From what Slurm says to what the scheduler policy sees: :func:`build_view`.

Everything here is derived from one ``nodes()`` and one ``jobs()`` answer, so a restarted agent
rebuilds the same view (no hidden state). GPU occupancy comes from Slurm's allocated indices;
a fabric job already pinned by the agent (``ReqNodeList`` set and eligible) but not yet started
holds the lowest free GPUs of its hosts (Slurm's own choice), so it is never placed twice, unless a job of a
tier that may preempt its tier waits: then it is pending to the policy again (``withdrawn``), as its pin
costs nothing to withdraw, and no running gang is requeued while it holds hosts that would serve. While
the GPUs it waits for are still being released (a requeued victim's teardown, a completing job),
it keeps its hosts for :data:`PIN_GRACE_S`, so a preemption is not repeated for it. A pin whose
GPUs are free but that Slurm has not started within ``pin_timeout_s`` (something the agent does
not see is missing: memory, a license, a feature) is *stale*: the job is placed again, avoiding
those hosts (``avoid``), and handed to Slurm after a few stale pins (:mod:`fabric_hpc.slurm.actions`).
A pin Slurm rejects (reason ``BadConstraints``: no nodes of it satisfy the job, priority 0 without a
hold) is listed in ``rejected``; the agent hands that job to Slurm once. A ReqNodeList the agent did not
set (:attr:`PinRules.own`: someone's ``scontrol update``) is listed in ``foreign``, never placed, moved or
cleared: the agent hands the job to Slurm keeping it, and once eligible it keeps the free GPUs of its hosts.

A job that names a GPU type (``--gres=gpu:a100:1``, ``--gpus-per-node=a100:1``) is placed only on hosts
whose GPUs Slurm types so: Slurm's own node answer (``Gres=gpu:a100:2``) compared exactly, case
included, as Slurm compares GRES types (gres.c: ``gres_build_id``). Other hosts join its ``exclude``;
when no host of the fabric model has that type, the job is handed to Slurm with the reason.

Hosts of the fabric model that Slurm does not list are down (never placed on). A pending job is
never placed on the hosts of its own ``-x`` (Slurm's ``ExcNodeList``), and only on hosts with enough
free CPUs for its share (its CPUs over its nodes, as Slurm says), and, when Slurm reports the job's
partition(s) and the nodes' partitions, only on hosts of one of its partitions (none there: handed to
Slurm with the reason).
A job Slurm will not start on any hosts (:attr:`~fabric_hpc.slurm.contract.Job.blocked`): held
(``sbatch -H``, ``scontrol hold``) or waiting on a dependency (``sbatch --dependency``, reason
``Dependency`` or ``DependencyNeverSatisfied``), is not placed and holds no GPUs, even when pinned: it is
listed in ``blocked``, and the agent clears a pin it set before (the job may wait for days; other gangs
take those hosts meanwhile).
A pending job whose begin time is still ahead and is no fabric deferral (the user's ``--begin``, Slurm's
delay after a requeue) is listed in ``not_before``: not placed before that time (:meth:`PinRules.not_before`).
A running job fabric does not place (no ``fabric`` comment, ``nofabric``) is running to the policy too, its
GPUs freed at Slurm's start + time limit (none: :data:`UNLIMITED_WALLTIME_S`), never a preemption victim: a
gang waiting for them gets its reservation, and later jobs backfill only around it (as Slurm's backfill).
Job arrays and heterogeneous jobs are never fabric jobs (:attr:`~fabric_hpc.slurm.contract.Job.grouped`).
A reservation that has not started yet (``scontrol create reservation starttime=now+2hours ...``, read by
:class:`~fabric_hpc.slurm.contract.ReadsReservations`) keeps a job that does not name it off its nodes when it
starts before the job's time limit would end (now + ``--time``; a job without one: any reservation to come),
as Slurm's own scheduler does (reservation.c ``job_test_resv``): pinned there, Slurm would not start it
before the reservation ended (:func:`fabric_hpc.slurm.reservations.kept_out`, ``View.upcoming``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import emit
from fabric_hpc.hostlist import compress, expand, select
from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.state import FREE
from fabric_hpc.placement.explain import never_fits
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler import DEFAULT_TIERS, TIERS, PendingJob, RunningJob, Tier
from fabric_hpc.scheduler import Job as SchedJob
from fabric_hpc.slurm.ckpt_time import last_checkpoint_time
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.blocks import Blocks
from fabric_hpc.slurm.blocks import fit as fit_blocks
from fabric_hpc.slurm.contract import BAD_CONSTRAINTS, Job, Node, Reservation, limit_reason
from fabric_hpc.slurm.parse import RUNNING_STATES
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.slurm.view_hosts import (  # noqa: F401 (callers import them from here)
    Hosts, free_memory, in_use, outside_partition, outside_reservation, wrong_gpu_type)
from fabric_hpc.slurm.view_requests import (  # noqa: F401 (callers import them from here)
    _request, _request_or_none, account_of, handoff_exclusions, kept_out, request_of, split_options)
from fabric_hpc.topology import Fabric

UNATTRIBUTED = "slurm:unattributed"
#: The walltime of a job without a time limit (``UNLIMITED``, ``--time=0``; Slurm already reports a job
#: submitted without ``--time`` with its partition's ``MaxTime``): Slurm's year (job_mgr.c
#: ``job_end_time_reset``, backfill.c ``YEAR_MINUTES``), so such a job is never backfilled in front of a
#: reservation and a gang waiting for it waits that long (an unlimited spot gang is a preemption candidate
#: like any long one).
UNLIMITED_WALLTIME_S = 365 * 24 * 3600.0
#: How long after its pin a job keeps its hosts while the GPUs it needs are still held by jobs
#: that are going away (Slurm's ``KillWait``, 30 s by default, plus the epilog); later it is re-placed.
PIN_GRACE_S = 120.0
#: How far a begin time may lie from a fabric deferral and still be one (Slurm rounds to seconds and
#: sets the submit time after the plugin ran; the agent's clock reads before Slurm's update).
DEFERRAL_SLACK_S = 3.0
#: How long a spot gang the agent requeued waits before it is placed again, instead of Slurm's requeue
#: delay (``requeue_delay``, by default the credential lifetime, 121 s): a launch credential of a later
#: second than the requeue's revocation is valid (Slurm's own reason for the delay); pinned 0.1 s after
#: a requeue, 22.05 killed a job with "Job credential revoked".
REQUEUE_GAP_S = 5.0


@dataclass
class View:
    """The agent's picture of the cluster for one cycle."""

    state: ClusterState
    pending: list[PendingJob] = field(default_factory=list)
    #: Every running job holding GPUs of the fabric model, ending at Slurm's start + time limit; those fabric
    #: does not place (unmarked, ``nofabric``) as never-preempted gangs of tier normal
    #: (``meta["fabric"]`` False).
    running: list[RunningJob] = field(default_factory=list)
    #: Pinned by the agent, eligible, not started yet (job id -> hosts).
    pinned: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Pending fabric jobs the policy sees (job id -> Slurm job).
    candidates: dict[int, Job] = field(default_factory=dict)
    #: Fabric jobs that cannot be placed by fabric (job id -> why): handed to Slurm.
    invalid: dict[int, str] = field(default_factory=dict)
    unknown_nodes: list[str] = field(default_factory=list)
    #: Hosts of the fabric model that Slurm does not list: down for the agent.
    missing: list[str] = field(default_factory=list)
    #: Pins Slurm did not start within ``pin_timeout_s`` although their GPUs were free (job -> hosts).
    stale: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: GPUs held per Slurm account by every running job (fabric-marked or not): the fairshare charge.
    held: dict[str, int] = field(default_factory=dict)
    #: Pending fabric jobs held or waiting on a dependency (job id -> Slurm job; ``Job.blocked`` says
    #: which): not placed, no GPUs kept for them.
    blocked: dict[int, Job] = field(default_factory=dict)
    #: Pins Slurm rejected (reason BadConstraints) (job id -> hosts): handed to Slurm, not pinned again.
    rejected: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Pending fabric jobs whose ReqNodeList the agent did not set (job id -> its hosts; a user's or an
    #: admin's ``scontrol update ReqNodeList=``): handed to Slurm keeping it, never placed or unpinned.
    foreign: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: The jobs to hand over (those of :attr:`foreign`, and those handed over before and not yet given:
    #: ``PinRules.skip``) whose own begin time (``--begin``, ``scontrol update StartTime=``, Slurm's requeue
    #: delay: :meth:`PinRules.not_before`) is still ahead: job id -> that time to set again, or None where
    #: Slurm holds it already (not a fabric deferral taken over): the hand-over keeps or restores it.
    own_begins: dict[int, float | None] = field(default_factory=dict)
    #: Jobs Slurm holds back under a limit (job id -> its reason, :func:`contract.limit_reason`): handed to
    #: Slurm (which shows the user its reason and starts the job once the limit allows), not placed again.
    limited: dict[int, str] = field(default_factory=dict)
    #: Pending fabric jobs whose begin time is no fabric deferral (the user's ``--begin``, Slurm's requeue
    #: delay) and still ahead (job id -> that time): not placed before it, no GPUs kept, not deferred.
    not_before: dict[int, float] = field(default_factory=dict)
    #: Pinned, unstarted jobs of a tier a waiting job's tier may preempt (job id -> its pin's hosts): pending
    #: to the policy again (a pin costs nothing to withdraw; the agent clears it when the job waits).
    withdrawn: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Reservations still to come that hold hosts of the fabric model (jobs that would run into them are
    #: kept off their nodes, :meth:`Hosts.kept_from`), and those left out as untrustworthy (name -> why).
    upcoming: list[Reservation] = field(default_factory=list)
    ignored_reservations: dict[str, str] = field(default_factory=dict)
    #: GPUs of nodes up but closed to new jobs by a drain alone (down in ``state``: never placed on), and
    #: those of them Slurm's jobs use: counted as up and allocated in the metrics and the utilisation only.
    drain_gpus: int = 0
    drain_alloc: int = 0

    def drop(self, job_ids: Collection[int]) -> None:
        """Take jobs out of the policy's pending list (handed to Slurm)."""
        if gone := job_ids & self.candidates.keys():
            self.candidates = {j: job for j, job in self.candidates.items() if j not in gone}
            self.pending = [p for p in self.pending if int(p.job.id) not in gone]


@dataclass(frozen=True)
class Inputs:
    """What the site configures about reading jobs: QOS/partition -> tier, the checkpoint root."""

    tiers: TierMap = field(default_factory=TierMap)
    #: The TaskProlog's ``ckpt_root``: running jobs' last checkpoints are read below it (None: not read).
    ckpt_root: str | os.PathLike[str] | None = None


def _sched_job(job: Job, request: Request, inputs: Inputs) -> SchedJob:
    _, tier = split_options(job, inputs.tiers)
    walltime = float(job.time_limit_min * 60) if job.time_limit_min else UNLIMITED_WALLTIME_S
    return SchedJob(id=str(job.job_id), request=request, submit=job.submit_time, walltime=walltime,
                    user=job.user or "user", account=account_of(job),
                    tier=tier if tier in TIERS else "normal", meta={"slurm_job": job.job_id})


def _last_checkpoint(job: Job, inputs: Inputs, start: float, now: float) -> float | None:
    """The job's last checkpoint in this run (None: none since ``start``, or not read)."""
    if inputs.ckpt_root is None:
        return None
    t = last_checkpoint_time(inputs.ckpt_root, job.user, job.name, now=now)
    return t if t is not None and t >= start else None


def _running(state: ClusterState, job: Job, req: Request | None, inputs: Inputs, now: float,
             mine: list[str] | None = None) -> RunningJob:
    """The running job as the policy sees it: a fabric job with its request, tier and checkpoint; any other
    job holding GPUs of the fabric model (unmarked, ``nofabric``, a fabric comment that does not parse) as
    an anonymous gang that is never a preemption victim, so that its GPUs, too, are freed at Slurm's start
    + time limit and a reservation may count on them (without it, no gang was ever reserved behind it).
    ``mine``: the GPUs it holds, if known (:meth:`ClusterState.job_gpus` scans every GPU of the fabric)."""
    pos = state.fab.gpu_pos
    gpus = tuple(sorted(mine, key=pos.__getitem__)) if mine else tuple(state.job_gpus(str(job.job_id)))
    start = job.start_time or now
    if req is not None:
        with contextlib.suppress(ConfigError):
            return RunningJob(job=_sched_job(job, req, inputs), gpus=gpus, start=start,
                              preemptible=job.requeue and job.state in RUNNING_STATES,  # not ending
                              last_checkpoint=_last_checkpoint(job, inputs, start, now))
    walltime = float(job.time_limit_min * 60) if job.time_limit_min else UNLIMITED_WALLTIME_S
    sj = SchedJob(id=str(job.job_id), request=_whole(len(gpus)), submit=job.submit_time, walltime=walltime,
                  user=job.user or "user", account=account_of(job), tier="normal",
                  meta={"slurm_job": job.job_id, "fabric": False})
    return RunningJob(job=sj, gpus=gpus, start=start, preemptible=False)


@functools.lru_cache(maxsize=256)
def _whole(gpus: int) -> Request:
    """The request of a job fabric does not place: its GPUs in total (one object per size: frozen)."""
    return Request(gpus=gpus)


def _count_draining(fab: Fabric, view: View, unusable: list[Node], jobs: list[Job]) -> None:
    """``view.drain_gpus`` / ``drain_alloc``: the GPUs of the nodes closed by a drain alone (up: a DRAIN
    flag or a drained/draining state, nothing down or failing) and those their jobs use (Slurm's used
    GPUs, the running jobs' GPUs there). For the metrics only: ``state`` keeps these nodes down."""
    drain = {n.name for n in unusable
             if replace(n, state="idle" if n.state in ("drained", "draining") else n.state,
                        flags=tuple(f for f in n.flags if f != "DRAIN")).usable}
    if not drain:
        return
    used = {g for n in unusable if n.name in drain for g in _gpu_ids(fab, n.name, n.gpus_used)}
    used |= {g for j in jobs if j.active for h, idx in j.gpus.items() if h in drain
             for g in _gpu_ids(fab, h, idx)}
    view.drain_gpus, view.drain_alloc = sum(len(fab.host_gpus(h)) for h in drain), len(used)


def _gpu_ids(fab: Fabric, host: str, indices: tuple[int, ...]) -> list[str]:
    gpus = fab.host_gpus(host)
    return [gpus[i] for i in indices if i < len(gpus)]


def _free_at(fab: Fabric, state: ClusterState, listed: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """The positions of the GPUs ``listed`` (hosts of the fabric, Slurm's GPU indices there: those past a
    host's GPUs left out, :func:`_gpu_ids`) that no job holds in ``state``, in the order listed."""
    pos = fab.gpu_pos
    at = np.fromiter((pos[g] for host, idx in listed for g in _gpu_ids(fab, host, idx)), np.int64)
    return at[state.owner[at] == FREE]


@dataclass(frozen=True)
class PinRules:
    """What the agent remembers between cycles about pins (:class:`~fabric_hpc.slurm.actions.Actions`)."""

    timeout_s: float = 60.0
    #: Jobs handed to Slurm after failed or stale pins: not placed again.
    skip: Collection[int] = ()
    #: Hosts of a job's stale pins: it is placed elsewhere.
    avoid: Mapping[int, Collection[str]] = field(default_factory=dict)
    #: The fallback deferral (job_submit.lua's FALLBACK_S, the agent's ``fallback_s``); None: every begin
    #: time ahead is taken for a fabric deferral.
    fallback_s: float | None = None
    #: The begin times the agent itself set (its deferral renewals), job id -> time.
    deferrals: Mapping[int, float] = field(default_factory=dict)
    #: Jobs whose own begin time the agent took over (job id -> that time): not placed before it.
    waits: Mapping[int, float] = field(default_factory=dict)
    #: The pins the agent set (job id -> hosts, :attr:`~fabric_hpc.slurm.actions.Actions.pins`): any other
    #: ReqNodeList of a pending job is someone else's (:attr:`View.foreign`). None: every one is the agent's.
    own: Mapping[int, frozenset[str]] | None = None
    #: Spot gangs the agent requeued itself (job id -> when): Slurm's requeue delay is replaced by
    #: :data:`REQUEUE_GAP_S`.
    requeued: Mapping[int, float] = field(default_factory=dict)
    #: The policy may preempt (the agent's ``preemption``); False: no pin is withdrawn
    #: (:attr:`View.withdrawn`).
    preemption: bool = True
    #: The policy's tiers: a pin is withdrawn only for a tier its tier's ``preempted_by`` names (the agent's
    #: ``fabric_policy``: spot for high only).
    tiers: Mapping[str, Tier] = field(default_factory=lambda: DEFAULT_TIERS)

    def not_before(self, job: Job, now: float) -> float | None:
        """The job's begin time when it is still ahead and no fabric deferral: neither the plugin's
        (submit time + fallback) nor one the agent set (a begin time it took over counts still). None
        when the job may be placed now."""
        if (requeued := self.requeued.get(job.job_id)) is not None:
            return requeued + REQUEUE_GAP_S if requeued + REQUEUE_GAP_S > now else None
        if (taken := self.waits.get(job.job_id)) is not None and taken > now:
            return taken
        begin = job.begin_time
        if begin is None or begin <= now or self.fallback_s is None:  # Slurm: eligible from that second on
            return None
        ours = [job.submit_time + self.fallback_s, self.deferrals.get(job.job_id)]
        return None if any(t is not None and abs(begin - t) <= DEFERRAL_SLACK_S for t in ours) else begin


def build_view(fab: Fabric, nodes: list[Node], jobs: list[Job], *, now: float,
               inputs: Inputs | None = None, pins: PinRules | None = None,
               reservations: resv.Read | None = None, blocks: Blocks | None = None) -> View:
    """The cluster state and the policy's pending/running lists for one cycle (``reservations``: what
    :meth:`~fabric_hpc.slurm.contract.ReadsReservations.reservations` answered; None: not read; ``blocks``:
    Slurm's topology/block layout, each job then kept to the hosts it accepts, :func:`.blocks.fit`)."""
    inputs = inputs or Inputs()
    state = ClusterState(fab)
    view = View(state=state)
    known = set(fab.host_pos)
    listed = {n.name for n in nodes}
    view.unknown_nodes = [n.name for n in nodes if n.name not in known]
    view.missing = [h for h in fab.host_pos if h not in listed]
    state.set_down([n.name for n in nodes if n.name in known and not n.usable] + view.missing)
    _count_draining(fab, view, [n for n in nodes if n.name in known and not n.usable], jobs)
    for job in jobs:
        if not job.active or not job.gpus:
            continue
        at = _free_at(fab, state, [(h, idx) for h, idx in job.gpus.items() if h in known])
        req = _request_or_none(job) if job.fabric_marked and job.gpus_per_node else None
        # all it holds (its id seen once, as a rule), in the fabric's order
        mine = None if state.holds(str(job.job_id)) else [fab.gpus[i] for i in sorted(at.tolist())]
        if at.size:  # with its tp/pp: the job's data-parallel rings are other gangs' background traffic
            state.allocate(str(job.job_id), at, **(req.parallel_meta() if req else {}))
            view.held[account_of(job)] = view.held.get(account_of(job), 0) + int(at.size)
        if state.holds(str(job.job_id)):
            view.running.append(_running(state, job, req, inputs, now, mine))
    # GPUs that are going away: those of completing jobs, and those Slurm says are used but no
    # active job we saw holds (a requeued job's teardown, a race, or a hidden job)
    releasing = {g for job in jobs if job.state == "COMPLETING" and state.holds(str(job.job_id))
                 for g in state.job_gpus(str(job.job_id))}
    for node in nodes:
        if node.name in known and node.gpus_used:
            free = _free_at(fab, state, [(node.name, node.gpus_used)])
            if free.size:
                state.allocate(UNATTRIBUTED, free)
                releasing.update(fab.gpus[i] for i in free.tolist())
    pins = pins or PinRules()
    pending = [j for j in jobs if j.pending and j.fabric_marked]
    if pins.own is not None:  # a ReqNodeList the agent did not set is not its to place, move or clear
        pending = _foreign(fab, view, pending, pins, now)
    _own_begins(view, [j for j in pending if j.job_id in pins.skip], pins, now)  # their hand-over to come
    pending = [j for j in pending if j.job_id not in pins.skip]
    view.blocked = {j.job_id: j for j in pending if j.blocked}
    pending = [j for j in pending if not j.blocked]
    free_cpus = {n.name: n.cpus - n.cpus_alloc for n in nodes if n.name in known and n.cpus}
    for host in _cpus_held(fab, view, free_cpus, jobs, now):
        del free_cpus[host]  # busy until its jobs end, not for good: a reservation may count on it
    if reservations is not None:
        view.upcoming = resv.upcoming(reservations[0], known, now)
        view.ignored_reservations = dict(reservations[1])
    hosts = Hosts.of([n for n in nodes if n.name in known], free_cpus, tuple(view.upcoming), now)
    _pending(fab, view, pending, now, inputs, releasing, pins, hosts, blocks)
    return view


def _foreign(fab: Fabric, view: View, pending: list[Job], pins: PinRules, now: float) -> list[Job]:
    """The pending jobs whose ReqNodeList is not the agent's pin (someone else's ``scontrol update``) go to
    :attr:`View.foreign` (those not handed over yet); an eligible one, not held, keeps the free GPUs of its
    hosts as a pin does (Slurm starts it there). Returns the other pending jobs."""
    own = pins.own or {}
    theirs = [j for j in pending if j.req_nodes and frozenset(j.req_nodes) != own.get(j.job_id)]
    for job in theirs:
        if not job.blocked and job.begin_time is not None and job.begin_time <= now + 0.5:
            want, _ = _pin_gpus(fab, view.state, job, set())
            if want:
                view.state.allocate(str(job.job_id), want)
    view.foreign = {j.job_id: j.req_nodes for j in theirs if j.job_id not in pins.skip}
    _own_begins(view, theirs, pins, now)  # a hand-over to come keeps a begin time of the job's own
    ids = {j.job_id for j in theirs}
    return [j for j in pending if j.job_id not in ids]


def _own_begins(view: View, jobs: list[Job], pins: PinRules, now: float) -> None:
    """:attr:`View.own_begins` of ``jobs`` (to be handed over)."""
    for job in jobs:
        if (own := pins.not_before(job, now)) is not None:
            held = job.begin_time is not None and abs(job.begin_time - own) <= DEFERRAL_SLACK_S
            view.own_begins[job.job_id] = None if held else own


def _cpus_held(fab: Fabric, view: View, free_cpus: Mapping[str, int], jobs: list[Job],
               now: float) -> list[str]:
    """The hosts whose every CPU running jobs hold (a CPU-only job, or a GPU job on all cores): their free
    GPUs go to an anonymous, never-preempted job (``slurm:cpus:HOST``) that ends when the last of those
    jobs would (Slurm's start + time limit), so that no job starts there now and a reservation counts on
    the host from then on. Without it the host was left out of every job's placements, the future's too,
    and a waiting gang got no reservation. A host whose CPUs no job we see holds (hidden jobs) stays left
    out."""
    ends: dict[str, tuple[float, Job]] = {}
    for job in jobs:
        if not job.active:
            continue
        limit = float(job.time_limit_min * 60) if job.time_limit_min else UNLIMITED_WALLTIME_S
        end = max((job.start_time or now) + limit, now + 1.0)
        for host in job.node_list:
            if free_cpus.get(host, 1) <= 0 and end > ends.get(host, (0.0, job))[0]:
                ends[host] = (end, job)
    state = view.state
    for host, (end, job) in ends.items():
        free = [g for g in fab.host_gpus(host) if state.owner[fab.gpu_pos[g]] == -1]
        if not free:
            continue
        name = f"slurm:cpus:{host}"
        state.allocate(name, free)
        sj = SchedJob(id=name, request=_whole(len(free)), submit=now, walltime=end - now,
                      user=job.user or "user", account=account_of(job), tier="normal",
                      meta={"slurm_job": job.job_id, "fabric": False})
        view.running.append(RunningJob(job=sj, gpus=tuple(free), start=now, preemptible=False))
    return list(ends)


def _pinned(fab: Fabric, view: View, job: Job, now: float, releasing: set[str], timeout_s: float) -> bool:
    """A pinned job keeps its hosts (True), or is placed again (False; a stale pin is noted)."""
    age = now - (job.begin_time or now)
    want, waits = _pin_gpus(fab, view.state, job, releasing if age <= PIN_GRACE_S else set())
    if want is None:
        return False  # its GPUs were taken meanwhile
    if age > timeout_s and not waits:
        view.stale[job.job_id] = job.req_nodes
        return False
    if want:
        view.state.allocate(str(job.job_id), want)
    view.pinned[job.job_id] = job.req_nodes
    return True


def _pending(fab: Fabric, view: View, pending: list[Job], now: float, inputs: Inputs,
             releasing: set[str], pins: PinRules, hosts: Hosts, blocks: Blocks | None = None) -> None:
    memo: dict = {}
    pinned = pins.preemption and any(j.req_nodes for j in pending)  # --no-preemption: no pin withdrawn
    withdraw = _withdrawable(pending, now, inputs, pins) if pinned else set()
    for job in sorted(pending, key=lambda j: (j.submit_time, j.job_id)):
        if job.req_nodes and job.reason == BAD_CONSTRAINTS:
            view.rejected[job.job_id] = job.req_nodes  # Slurm will never start it there
            _own_begins(view, [job], pins, now)
            continue
        if (begin := pins.not_before(job, now)) is not None:
            view.not_before[job.job_id] = begin  # the user's --begin, Slurm's requeue delay: waited for
            continue
        if limit_reason(job.reason):  # after not_before: a hand-over (StartTime=now) must not undo a --begin
            view.limited[job.job_id] = job.reason  # no pin starts it: Slurm's reason must reach the user
            continue
        eligible = job.begin_time is not None and job.begin_time <= now + 0.5
        if job.req_nodes and eligible and job.job_id in withdraw:
            view.withdrawn[job.job_id] = job.req_nodes  # placed again, its hosts not held
        elif job.req_nodes and eligible and _pinned(fab, view, job, now, releasing, pins.timeout_s):
            continue
        try:
            request = request_of(job)
            never = never_fits(fab, request)  # e.g. numa_local on hosts whose NUMA nodes are smaller
            if never is not None:
                raise ConfigError(f"job {job.job_id}: {never.message}", hint=never.hint)
            extra = {*pins.avoid.get(job.job_id, ()), *view.stale.get(job.job_id, ())}
            request = _avoiding(request, hosts.kept_from(job) | extra)
            if blocks is not None:  # only host sets Slurm's topology/block allocates (else BadConstraints)
                request = fit_blocks(blocks, fab, view.state, job, request, memo,
                                     for_now=hosts.kept_for_now(job) - extra)
        except ConfigError as exc:
            if job.begin_time is None or job.begin_time > now:  # not yet handed to Slurm
                text = exc.message
                view.invalid[job.job_id] = text if text.startswith("job ") else f"job {job.job_id} {text}"
            continue
        view.candidates[job.job_id] = job
        view.pending.append(PendingJob(job=_sched_job(job, request, inputs), queued_since=job.submit_time))
    if view.invalid:
        emit("agent.invalid_requests", jobs=sorted(view.invalid))


def _withdrawable(pending: list[Job], now: float, inputs: Inputs, pins: PinRules) -> set[int]:
    """The pinned jobs whose tier may be preempted by the tier of a job waiting to be placed (not pinned, no
    begin time of its own ahead, under no Slurm limit): their pins are withdrawn rather than a running
    gang requeued (:attr:`View.withdrawn`)."""
    tiers = {j.job_id: split_options(j, inputs.tiers)[1] for j in pending}
    waiting = {tiers[j.job_id] if tiers[j.job_id] in TIERS else "normal" for j in pending
               if not j.req_nodes and pins.not_before(j, now) is None and not limit_reason(j.reason)}
    out = set()
    for job in pending:
        tier = pins.tiers.get(tiers[job.job_id])
        if job.req_nodes and tier is not None and tier.preemptible and waiting & set(tier.preempted_by):
            out.add(job.job_id)
    return out


def _pin_gpus(fab: Fabric, state: ClusterState, job: Job,
              releasing: set[str]) -> tuple[list[str] | None, bool]:
    """(the lowest free GPUs of a pinned job's hosts, whether it waits for GPUs being released);
    None when they are not free (re-place it).

    GPUs in ``releasing`` (held by jobs that are going away) count as coming: the job keeps its
    hosts, holding the free ones now."""
    want: list[str] = []
    waits = False
    for host in job.req_nodes:
        if host not in fab.host_pos:
            return None, False
        gpus = fab.host_gpus(host)
        free = [g for g in gpus if state.owner[fab.gpu_pos[g]] == -1]
        coming = sum(g in releasing for g in gpus)
        if len(free) + coming < job.gpus_per_node:
            return None, False
        waits = waits or len(free) < job.gpus_per_node
        want.extend(free[: job.gpus_per_node])
    return want, waits


def _avoiding(request: Request, avoid: Collection[str]) -> Request:
    """The request with the hosts it must not get added to its ``exclude`` (:meth:`Hosts.kept_from`, and
    those of its stale pins)."""
    extra = set(avoid) - (select(request.exclude, avoid) if request.exclude else set())
    if not extra:  # the list is expanded only to write a new one
        return request
    given = set(expand(request.exclude)) if request.exclude else set()
    return request.model_copy(update={"exclude": compress(sorted(extra | given))})
