"""The agent's actions on Slurm, one job at a time: a failed one is logged and the others go on.

Order within a cycle (:meth:`Actions.apply`): clear the pins of jobs held since (``scontrol
hold``) or waiting on a dependency since, requeue the spot victims (and clear their old pins), pin
the started jobs, then hand over to Slurm the jobs fabric cannot place, but only in a cycle that
pinned nothing (a handed-over job is eligible at once, so Slurm could give it the hosts just
pinned); postponed hand-overs happen in the next cycle without pins, or when their deferral ends;
last, renew the deferrals of the jobs still waiting (each job's renewal independent of the others').

A refused action (``SlurmError``) becomes an ``agent.failed`` record (audit log and event stream)
naming the action, the job and Slurm's message; the other actions of the cycle still run (a job that
started or ended since the cycle's read is no failure: :meth:`Actions._left_pending`). A job
whose pin fails :data:`MAX_PIN_FAILURES` cycles in a row (or whose pin went stale, see
:mod:`fabric_hpc.slurm.view`) is handed to Slurm: its ``ReqNodeList`` is cleared and it is eligible
at once; the agent no longer places it; so is a job whose pin Slurm rejected (``BadConstraints``),
at once, and a job whose ReqNodeList the agent did not set (:meth:`Actions.foreign`), which keeps that
list. A hand-over Slurm refuses :data:`MAX_PIN_FAILURES` times is given up (one
``agent.handoff_abandoned`` record), not retried every cycle. The agent remembers the begin time of each
deferral it sets (:attr:`Actions.deferrals`): a begin time that is none of its own nor the plugin's is
waited for (:mod:`fabric_hpc.slurm.view`), and so is each begin time it asked for even where Slurm refused
the update (25.11 and 22.05 refuse a job of an INACTIVE partition yet set its StartTime); a refused deferral
is retried after a backoff, :data:`MAX_DEFER_FAILURES` times at most (``agent.defer_abandoned``). A spot
victim whose requeue Slurm refuses :data:`MAX_PIN_FAILURES` times is not chosen again while it runs
(``agent.requeue_abandoned``). The deferrals (begin times asked for and set, refused ones) are kept across
restarts (:mod:`fabric_hpc.slurm.deferral_store`); the rest lives in memory: a restarted agent tries again.

Slurm refusing the agent itself (``Invalid user id``, ``Access/permission denied``: the agent runs
as a user that may not modify other users' jobs) is fatal: :class:`AgentPrivilegeError`, exit 3.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import compress
from fabric_hpc.slurm.contract import SlurmClient, SlurmError
from fabric_hpc.slurm.parse import reason_words
from fabric_hpc.slurm.view import DEFERRAL_SLACK_S
from fabric_hpc.topology.export import block_members

if TYPE_CHECKING:
    from fabric_hpc.topology.model import Fabric

#: Failed pins (or stale ones) in a row after which a job is handed to Slurm.
MAX_PIN_FAILURES = 3
#: Deferrals renewed per ``defer_many`` call (the cli backend's ``scontrol update JobId=a,b,c``).
RENEW_BATCH = 200
#: How long the agent remembers a requeue it did while the job is not pending (Slurm's teardown).
REQUEUE_MEMORY_S = 600.0
#: How long the agent remembers its pin of a job that ended: ``scontrol requeue`` of an ended job (possible
#: while slurmctld keeps its record, MinJobAge, default 300 s) brings it back pending with that ReqNodeList,
#: which is then still the agent's to move (not someone else's node list holding the job to old hosts).
ENDED_PIN_MEMORY_S = 3600.0
#: Seconds before a refused deferral of a job is sent again (doubling per refusal), and the refusals in a row
#: after which the agent stops deferring that job (``agent.defer_abandoned``; Slurm's fallback then applies).
DEFER_RETRY_S = 4.0
MAX_DEFER_FAILURES = 3
#: The begin times the agent asked for, kept per job (recognised as its own, :meth:`Actions.recognise`).
ASKED_KEPT = 4
#: The reason of the hand-over of a job whose ReqNodeList the agent did not set (:meth:`Actions.foreign`).
USER_PIN = "ReqNodeList set by someone else"
#: Slurm's answers when the caller may not modify a job (22.05 to 25.11).
DENIED = ("invalid user id", "access denied", "access/permission denied", "permission denied")
PRIVILEGE_HINT = ("run the agent as SlurmUser or root, or make its user a Slurm operator "
                  "(sacctmgr modify user NAME set AdminLevel=Operator; needs slurmdbd); docs/deploy.md")


class AgentPrivilegeError(ConfigError):
    """Slurm does not let the agent's user modify jobs: fatal, exit 3."""


def denied(message: str) -> bool:
    """Slurm's message says the caller lacks the privilege (not that the request was wrong)."""
    low = message.lower()
    return any(d in low for d in DENIED)


class Applied(NamedTuple):
    """What Slurm accepted of one cycle's actions (:meth:`Actions.apply`): the metrics and the
    ``agent.requeue`` records follow it, not the decisions."""

    placed: list[int]    # jobs pinned (their ``scontrol update`` accepted), in the order of ``started``
    requeued: list[int]  # spot victims requeued


def rejected_pin_words(hosts: tuple[str, ...], fab: Fabric | None = None) -> str:
    """Why Slurm rejected a pin to ``hosts``, in words. Over several blocks of ``fab`` (its NVLink
    domains, else leaves) topology/block's rule is the likely cause: it keeps a job in one block (or
    an aligned group of 2, 4 ... blocks) unless the job asks ``--segment=N``, N hosts in one block
    each (here the greatest common divisor of the pin's hosts per block)."""
    head = f"Slurm rejected the pin to {compress(list(hosts))} (BadConstraints)"
    per_block = _hosts_per_block(hosts, fab) if fab is not None else {}
    if len(per_block) < 2:
        return f"{head}: those nodes cannot satisfy the job, e.g. its GPU type or a constraint"
    names = list(per_block)
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    largest = max(len(members) for _, members in block_members(fab))  # type: ignore[arg-type]
    one = " or --comment=fabric:include=<hosts of one block>" if len(hosts) <= largest else ""
    return (f"{head}: those nodes are in {len(names)} blocks ({shown}), and on a topology/block cluster "
            f"Slurm keeps a job in one block (or an aligned group of blocks) unless it asks --segment: "
            f"likely the cause (else its GPU type or a constraint); to span blocks, submit with "
            f"--segment={math.gcd(*per_block.values())}{one}")


def _hosts_per_block(hosts: tuple[str, ...], fab: Fabric) -> dict[str, int]:
    """The pin's hosts per block of ``fab``, in block order ({} when the fabric has no blocks)."""
    try:
        blocks = block_members(fab)
    except ConfigError:
        return {}
    where = {h: name for name, members in blocks for h in members}
    counts: dict[str, int] = {}
    for h in hosts:
        if h in where:
            counts[where[h]] = counts.get(where[h], 0) + 1
    return {name: counts[name] for name, _ in blocks if name in counts}



def _start_of(kept_begin: Mapping[int, float | None], job_id: int) -> dict[str, str]:
    """A hand-over's ``StartTime``: ``now``, but for a job whose own begin time is kept: nothing where Slurm
    has it, else that time again (``now+S``: the agent's deferral had replaced it)."""
    if job_id not in kept_begin:
        return {"StartTime": "now"}
    own = kept_begin[job_id]
    return {} if own is None else {"StartTime": f"now+{max(1, math.ceil(own - time.time()))}"}

class Actions:
    """Applies one cycle's actions; ``note(what, **fields)`` records an ``agent.<what>`` event."""

    def __init__(self, client: SlurmClient, note: Callable[..., None]) -> None:
        self.client, self.note = client, note
        self.failures: dict[int, int] = {}        # job -> failed or stale pins in a row
        self.handed_off: set[int] = set()          # handed to Slurm after failures: not placed again
        self.to_hand: dict[int, str] = {}          # job -> why: to hand over at the next cycle without pins
        self.avoid: dict[int, set[str]] = {}       # job -> hosts of its stale pins (re-placed elsewhere)
        self.stale_count: dict[int, int] = {}      # job -> stale pins so far
        self.handoff_failures: dict[int, int] = {}  # job -> failed hand-overs so far
        self.deferrals: dict[int, float] = {}      # job -> the begin time the agent's last deferral set
        self.waits: dict[int, float] = {}          # job -> its own begin time, taken over (:meth:`take_over`)
        self.requeued: dict[int, float] = {}       # job -> when the agent requeued it (a spot victim)
        self.unpin_failures: dict[int, int] = {}   # pending job -> refused unpins in a row
        self.requeued_start: dict[int, float] = {}  # victim -> its start time when the agent requeued it
        self._starts: Mapping[int, float] = {}     # the running jobs' start times of this cycle (forget)
        self.requeue_failures: dict[int, int] = {}  # running job -> refused requeues so far
        self.unrequeueable: set[int] = set()        # running jobs never taken for victims again
        self.asked: dict[int, list[float]] = {}     # job -> the last begin times the agent asked for
        self.defer_retry: dict[int, tuple[int, float]] = {}  # job -> (refused deferrals in a row, next try)
        #: job -> the hosts of the pin the agent set (kept while the job lives: a requeued job keeps its pin,
        #: and :data:`ENDED_PIN_MEMORY_S` after it ended); any other ReqNodeList is someone else's
        #: (:meth:`foreign`), never cleared by the agent
        self.pins: dict[int, frozenset[str]] = {}
        self.pins_ended: dict[int, float] = {}     # job -> when its pin's job was first seen ended
        self.kept: set[int] = set()                 # hand-overs that keep the job's ReqNodeList (not ours)
        self.kept_begin: dict[int, float | None] = {}  # ... and its own begin (None: Slurm has it already)
        self.failed_total = 0
        self.last_error: str | None = None
        #: the agent is stopping (SIGTERM): a request the client abandons for it is raised, no failed action
        self.stopping: Callable[[], bool] = lambda: False

    def apply(self, requeued: list[int], started: list[dict[str, Any]], invalid: dict[int, str],
              deferred: list[int], fallback_s: int, *, unpin: Iterable[int] = (),
              kept_out: Callable[[int], str | None] = lambda job_id: None,
              waits: Mapping[int, float] | None = None,
              victims_for: Mapping[int, int] | None = None) -> Applied:
        """Requeues, pins, hand-overs (none in a cycle that pinned), then the deferrals (one batch).
        ``unpin``: jobs the agent pinned before they were held or got a dependency (``Job.blocked``):
        their ReqNodeList is cleared (fabric jobs have no -w of their own: job_submit.lua refuses one) and
        their deferral renewed. ``kept_out``: the ExcNodeList a job handed over needs (its ``include=``
        kept by Slurm too), None for none. ``waits``: jobs whose begin time is no fabric deferral (job ->
        that time; :meth:`take_over`). ``victims_for``: each victim's beneficiary (victim -> job): a job
        whose victim Slurm did not requeue is not pinned (its hosts stay busy) but deferred again.
        Returns what Slurm accepted (:class:`Applied`)."""
        self.take_over(waits or {}, fallback_s)
        kept = self._unpin(unpin, fallback_s)
        done = Applied([], [])
        for job_id in requeued:
            if self._requeue(job_id):
                done.requeued.append(job_id)
        unfreed = {(victims_for or {}).get(job_id) for job_id in requeued if job_id not in done.requeued}
        for entry in started:
            job_id = entry["job"]
            if job_id in unfreed or kept & set(entry["hosts"]):  # its hosts are not freed
                deferred = [*deferred, job_id]
                continue
            if self._do("place", job_id, self.client.place, job_id, entry["hosts"], moot=self._left_pending):
                self.pins[job_id] = frozenset(entry["hosts"])
                self.failures.pop(job_id, None)
                done.placed.append(job_id)
                continue
            n = self.failures[job_id] = self.failures.get(job_id, 0) + 1
            if n >= MAX_PIN_FAILURES:
                self.hand_over(job_id, f"pinning it failed {n} times in a row: {self.last_error}")
        handoffs = {**invalid, **self.to_hand}
        if not done.placed:
            for job_id, why in handoffs.items():
                self._hand(job_id, why, kept_out(job_id))
        self.renew([j for j in deferred if j not in handoffs], fallback_s)
        return done

    def _unpin(self, unpin: Iterable[int], fallback_s: int) -> set[str]:
        """Clear the pins of ``unpin`` (deferring each job again); returns the hosts of the pins Slurm kept
        (the job started there meanwhile, or a refused unpin, :data:`MAX_PIN_FAILURES` times at most in a
        row): no other job is pinned there this cycle."""
        kept: set[str] = set()
        for job_id in unpin:
            until = time.time() + int(fallback_s)
            self._ask(job_id, until)
            if self._do("unpin", job_id, self.client.update, job_id, ReqNodeList="",
                        StartTime=f"now+{int(fallback_s)}", moot=self._left_pending):
                self.deferrals[job_id] = until
                self.pins.pop(job_id, None)
                self.unpin_failures.pop(job_id, None)
                continue
            n = self.unpin_failures[job_id] = self.unpin_failures.get(job_id, 0) + 1
            if self._holds_pin(job_id, n):
                kept |= self.pins.get(job_id, frozenset())
        return kept

    def _holds_pin(self, job_id: int, refusals: int) -> bool:
        """Whether a job whose unpin failed may still take its pinned hosts: it runs there (started
        meanwhile), or it is pending and Slurm refused the unpin fewer than :data:`MAX_PIN_FAILURES` times in
        a row (after that its hosts go to whoever the policy places there: a pin Slurm keeps refusing to
        clear must not defer them for ever); not a job that ended."""
        try:
            job = self.client.job(job_id)
        except NotFoundError:
            return False
        except SlurmError:  # cannot tell: keep the hosts this cycle
            return True
        return job.active or (job.pending and refusals < MAX_PIN_FAILURES)

    def _requeue(self, job_id: int) -> bool:
        """Requeue one spot victim; after :data:`MAX_PIN_FAILURES` refusals (``--no-requeue`` where Slurm did
        not say so, a requeue disabled meanwhile) it is never chosen again while it runs (one
        ``agent.requeue_abandoned`` record)."""
        if self._do("requeue", job_id, self.client.requeue, job_id):
            self.requeued[job_id] = time.time()
            if (start := self._starts.get(job_id)) is not None:
                self.requeued_start[job_id] = start
            self.requeue_failures.pop(job_id, None)
            # a requeued job keeps its ReqNodeList: clear the agent's pin, so it is placed afresh (a list
            # someone else set stays: the job is handed to Slurm again with it, :meth:`foreign`)
            if job_id in self.pins and self._do("unpin", job_id, self.client.update, job_id, ReqNodeList="",
                                                moot=self._left_pending):
                self.pins.pop(job_id, None)
            return True
        n = self.requeue_failures[job_id] = self.requeue_failures.get(job_id, 0) + 1
        if n >= MAX_PIN_FAILURES and job_id not in self.unrequeueable:
            self.unrequeueable.add(job_id)
            self.note("requeue_abandoned", job=job_id, count=n, error=self.last_error)
        return False

    def _hand(self, job_id: int, why: str, out: str | None) -> None:
        """One hand-over; after :data:`MAX_PIN_FAILURES` refused ones the agent gives up on the job (one
        ``agent.handoff_abandoned`` record): it is no longer placed, deferred or handed over. A job whose
        ReqNodeList is someone else's (:meth:`foreign`) keeps it: only ``StartTime=now``."""
        extra: dict[str, str] = {"ExcNodeList": out} if out else {}
        pin = {} if job_id in self.kept else {"ReqNodeList": ""}
        start = _start_of(self.kept_begin, job_id)  # no fields at all: no update is sent
        if self._do("handoff", job_id, self.client.update, job_id, **pin, **start, moot=self._left_pending,
                    **extra):
            self.to_hand.pop(job_id, None)
            if pin:
                self.pins.pop(job_id, None)
            self.note("handoff", job=job_id, reason=why)
            return
        n = self.handoff_failures[job_id] = self.handoff_failures.get(job_id, 0) + 1
        if n >= MAX_PIN_FAILURES:
            self.to_hand.pop(job_id, None)
            self.handed_off.add(job_id)
            self.note("handoff_abandoned", job=job_id, count=n, reason=why, error=self.last_error)

    def renew(self, jobs: list[int], fallback_s: int) -> None:
        """Renew the deferrals of waiting jobs, :data:`RENEW_BATCH` per ``defer_many``. A batch Slurm
        refuses (one job refused, or ended meanwhile) is retried job by job: the others are renewed, and
        each refusal is an ``agent.failed`` record of its own job (:meth:`_defer`: retried later, not every
        cycle)."""
        jobs = [j for j in jobs if self._may_defer(j)]
        for i in range(0, len(jobs), RENEW_BATCH):
            batch = jobs[i:i + RENEW_BATCH]
            if len(batch) > 1:
                until = time.time() + int(fallback_s)
                for job_id in batch:
                    self._ask(job_id, until)
                try:
                    self.client.defer_many(batch, fallback_s)
                    self.deferrals.update(dict.fromkeys(batch, until))
                    continue
                except (SlurmError, NotFoundError):  # retried one by one below
                    pass
            for job_id in batch:
                self._defer(job_id, int(fallback_s))

    def take_over(self, waits: Mapping[int, float], fallback_s: int) -> None:
        """A job's own begin time B (``--begin``, Slurm's delay after a requeue) becomes the agent's
        deferral to B + ``fallback_s``, as the plugin defers a job from its submit time: the agent places
        the job once B has come, before Slurm's scheduler could start it anywhere; with the agent gone,
        Slurm starts it ``fallback_s`` after B. Once per job and B (a refused one is retried as
        :meth:`_defer` says, to the same time: never later than B + ``fallback_s``)."""
        for job_id, begin in waits.items():
            taken = self.waits.get(job_id) == begin and job_id not in self.defer_retry
            if taken or not self._may_defer(job_id):
                continue
            seconds = max(int(math.ceil(begin - time.time())), 0) + int(fallback_s)
            self.waits[job_id] = begin  # B stays the job's own, whatever Slurm answers
            self._defer(job_id, seconds)

    def _defer(self, job_id: int, seconds: int) -> bool:
        """Defer one job by ``seconds``. The begin time asked for is the agent's own even when Slurm refuses
        the update: Slurm 25.11 answers a job of an INACTIVE partition with an error yet sets its StartTime.
        A refused deferral is sent again after :data:`DEFER_RETRY_S` (doubling), and after
        :data:`MAX_DEFER_FAILURES` refusals in a row not at all (``agent.defer_abandoned``)."""
        until = time.time() + int(seconds)
        self._ask(job_id, until)
        self.deferrals[job_id] = until
        if self._do("defer", job_id, self.client.defer, job_id, seconds, moot=self._left_pending):
            self.defer_retry.pop(job_id, None)
            return True
        n = (self.defer_retry.get(job_id, (0, 0.0))[0]) + 1
        self.defer_retry[job_id] = (n, time.time() + DEFER_RETRY_S * 2 ** (n - 1))
        if n == MAX_DEFER_FAILURES:
            self.note("defer_abandoned", job=job_id, count=n, error=self.last_error)
        return False

    def _may_defer(self, job_id: int) -> bool:
        """Not refused lately (:meth:`_defer`)."""
        n, at = self.defer_retry.get(job_id, (0, 0.0))
        return n == 0 or (n < MAX_DEFER_FAILURES and time.time() >= at)

    def _ask(self, job_id: int, until: float) -> None:
        asked = self.asked.setdefault(job_id, [])
        asked.append(until)
        del asked[:-ASKED_KEPT]

    def recognise(self, jobs: Iterable[Any]) -> None:
        """Before a cycle's view: a pending job whose begin time is one the agent asked for (refused or
        not) has that deferral (:attr:`deferrals`), so it is not taken for the user's ``--begin``."""
        for job in jobs:
            asked = self.asked.get(job.job_id)
            if asked and job.pending and job.begin_time is not None:
                for t in reversed(asked):
                    if abs(job.begin_time - t) <= DEFERRAL_SLACK_S:
                        self.deferrals[job.job_id] = t
                        break

    def hand_over(self, job_id: int, why: str) -> None:
        """Give a job to Slurm (at the next cycle without pins) and stop placing it."""
        self.handed_off.add(job_id)
        self.to_hand[job_id] = why

    def stale(self, stale: dict[int, tuple[str, ...]]) -> None:
        """Pins Slurm did not start in time: re-placed away from those hosts, handed over after a few."""
        for job_id, hosts in stale.items():
            self.avoid.setdefault(job_id, set()).update(hosts)
            n = self.stale_count[job_id] = self.stale_count.get(job_id, 0) + 1
            self.note("stale_pin", job=job_id, hosts=list(hosts), count=n)
            if n >= MAX_PIN_FAILURES:
                self.hand_over(job_id, f"Slurm did not start it on the hosts the agent pinned, {n} times")

    def rejected(self, rejected: dict[int, tuple[str, ...]], fab: Fabric | None = None) -> None:
        """Pins Slurm rejected (``BadConstraints``: it never starts the job on those hosts): each job is
        handed to Slurm once (its pin cleared, eligible now), never pinned again by this agent. With the
        fabric model ``fab``, a pin over several blocks names topology/block's rule
        (:func:`rejected_pin_words`)."""
        for job_id, hosts in rejected.items():
            self._hand_once(job_id, rejected_pin_words(hosts, fab))

    def limited(self, limited: Mapping[int, str]) -> None:
        """Jobs Slurm holds back under a limit (a partition's time limit, a down partition, a QOS
        limit): each is handed to Slurm once, so squeue shows the user Slurm's reason (a deferral would
        show BeginTime), and Slurm starts it once the limit allows; this agent does not place it again."""
        for job_id, reason in limited.items():
            self._hand_once(job_id, f"Slurm holds it back under a limit ({reason}: {reason_words(reason)}); "
                                    "Slurm starts it once the limit allows")

    def foreign(self, pinned: Mapping[int, tuple[str, ...]]) -> None:
        """Pending jobs whose ReqNodeList the agent did not set (a user's or an admin's ``scontrol update
        ReqNodeList=``): each is handed to Slurm once keeping that list (``StartTime=now`` only, or the job's
        own begin time: :meth:`own_begins`), never pinned, unpinned or deferred by this agent again."""
        for job_id, hosts in pinned.items():
            if job_id not in self.handed_off:
                self.kept.add(job_id)
                self.hand_over(job_id, f"{USER_PIN} ({compress(list(hosts))}): the agent "
                                       "leaves it; Slurm starts the job only on those hosts")

    def own_begins(self, begins: Mapping[int, float | None]) -> None:
        """The begin times of their own of the jobs waiting to be handed over, read this cycle
        (:attr:`~fabric_hpc.slurm.view.View.own_begins`): the hand-over keeps each, a user's ``scontrol update
        StartTime=`` after the decision too (a job whose list is someone else's, too)."""
        for job_id in self.to_hand:
            if job_id in begins:
                self.kept_begin[job_id] = begins[job_id]
            else:
                self.kept_begin.pop(job_id, None)

    def _hand_once(self, job_id: int, why: str) -> None:
        """:meth:`hand_over` a job this agent has not handed over yet."""
        if job_id not in self.handed_off:
            self.hand_over(job_id, why)

    def forget(self, pending: Iterable[int], active: Iterable[int] = (),
               started: Mapping[int, float] | None = None) -> None:
        """Drop the memory of jobs that are no longer pending (bounded memory); of refused requeues, of
        jobs no longer active; of the agent's requeue of a job that runs again (``started``: running job ->
        Slurm's start time, kept for this cycle's requeues), so that a later requeue, a user's or Slurm's,
        keeps Slurm's requeue delay."""
        keep = set(pending)
        for table in (self.failures, self.avoid, self.stale_count, self.to_hand, self.handoff_failures,
                      self.deferrals, self.waits, self.asked, self.defer_retry, self.unpin_failures):
            for job_id in [j for j in table if j not in keep]:
                del table[job_id]
        self.handed_off &= keep
        self.kept &= keep
        self.kept_begin = {j: t for j, t in self.kept_begin.items() if j in keep}
        alive = set(active) | keep
        now = time.time()
        self.pins_ended = {j: self.pins_ended.get(j, now) for j in self.pins if j not in alive}
        self.pins = {j: hosts for j, hosts in self.pins.items()
                     if j in alive or now - self.pins_ended[j] < ENDED_PIN_MEMORY_S}
        self.pins_ended = {j: t for j, t in self.pins_ended.items() if j in self.pins}
        self.requeue_failures = {j: n for j, n in self.requeue_failures.items() if j in alive}
        self.unrequeueable &= alive
        # a victim is not pending while Slurm tears it down: its requeue is kept a while
        self._starts = started = started or {}
        self.requeued = {j: t for j, t in self.requeued.items()
                         if (j in keep or now - t < REQUEUE_MEMORY_S) and not self._ran_again(j, t, started)}
        self.requeued_start = {j: s for j, s in self.requeued_start.items() if j in self.requeued}

    def _ran_again(self, job_id: int, at: float, started: Mapping[int, float]) -> bool:
        """The agent's victim (requeued at ``at``) runs again: a start time other than the one it had when it
        was requeued (where that was read; else one after ``at``, which a clock skew may blur)."""
        if (start := started.get(job_id)) is None:
            return False
        before = self.requeued_start.get(job_id)
        return start != before if before is not None else start > at

    def _left_pending(self, job_id: int) -> bool:
        """The job is no longer pending (Slurm started it, it ended, Slurm forgot it): a refused pin, unpin,
        hand-over or deferral is the race between the cycle's view and the update, not a failure (every
        backend: "Job has already finished" for a job cancelled meanwhile). Slurm refuses clearing
        ReqNodeList of a running job as a resize to no nodes: "Invalid node name specified" (job_mgr.c
        ``_update_job``)."""
        try:
            return not self.client.job(job_id).pending
        except NotFoundError:
            return True
        except SlurmError:  # cannot tell: the refusal is reported
            return False

    def _do(self, action: str, job_id: int | None, fn: Callable[..., None], *args: Any,
            moot: Callable[[int], bool] | None = None, **kw: Any) -> bool:
        """One action; a refusal is an ``agent.failed`` record unless ``moot(job_id)`` says the action no
        longer applies (a race with Slurm, not a failure: nothing recorded)."""
        try:
            fn(*args, **kw)
            return True
        except NotFoundError:  # the job ended or was cancelled meanwhile: nothing to do
            return False
        except SlurmError as exc:
            if self.stopping():  # abandoned by the stop: the cycle ends here (Agent._loop), nothing failed
                raise
            text = " ".join(exc.message.split())
            if denied(text):
                raise AgentPrivilegeError(f"Slurm refused the agent's {action} of job {job_id}: {text[-200:]}",
                                          hint=PRIVILEGE_HINT) from None
            if moot is not None and job_id is not None and moot(job_id):
                return False
            self.failed_total += 1
            self.last_error = text[-300:]
            self.note("failed", action=action, job=job_id, error=self.last_error)
            return False
