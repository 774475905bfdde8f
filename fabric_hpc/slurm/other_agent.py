"""Another fabric agent on the same cluster: :class:`OtherAgentWatch` (``agent.other_agent``).

One agent per cluster: the lock (``<state_dir>/agent.lock``) keeps a second agent off one state
directory, but not a second agent started with another ``--state-dir`` against the same Slurm. Both
would place the same gangs, and each would take the other's deferral renewals for the user's own
``--begin``. What gives the second agent away is simple and cheap to see: a waiting fabric job's begin
time moves, between two cycles, to a time still ahead that this agent never asked for
(:attr:`~fabric_hpc.slurm.actions.Actions.asked`). A user may do that once (``scontrol update
StartTime=``), Slurm never does it to a plain pending job (a requeue goes through a running and a
completing state, so a requeued job is compared afresh, and the agent's own victims are left out; a begin
time that passes or a satisfied dependency is not ahead); another agent does it at every renewal. When such
moves are seen in :data:`FOREIGN_CYCLES` cycles within :data:`WINDOW_S`, and they moved at least two jobs
or each had a renewal cadence (the job's begin time set, at each of its moves, to the same offset after
the move, within the slack: an agent renews to the time of the renewal plus its ``fallback_s``, whatever
that agent's ``fallback_s`` is; one job of a user who moves it by hand again and again is not another
agent), the agent
writes one ``agent.other_agent`` warning (audit log and event stream, at most every :data:`WINDOW_S`) with
the jobs, and ``status.json`` has ``other_agent`` until no such move was seen for :data:`WINDOW_S`. It does
not stop: which agent is the stray one is the admin's call.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.limits import FALLBACK_S
from fabric_hpc.slurm.view import DEFERRAL_SLACK_S

#: Cycles with begin times moved by someone else after which another agent is reported.
FOREIGN_CYCLES = 3
#: Seconds those cycles must fall within, and between two warnings.
WINDOW_S = 900.0
#: Jobs named in a warning.
JOBS_SHOWN = 20
HINT = ("run one fabric agent per cluster: stop the other agent (look for `fabric agent run` on the other "
        "hosts, and its --state-dir); the job_submit plugin's STATE_DIR names the agent that is meant to run")


class OtherAgentWatch:
    """Sees begin times moved by someone else; ``check`` answers the warning to write, or None."""

    def __init__(self) -> None:
        self._seen: dict[int, float] = {}          # pending fabric job -> its begin time last cycle
        #: when moves by someone else were seen (one entry per cycle), with each moved job's offset range:
        #: (job, least, most) seconds from the move (somewhere in the cycle's interval) to its new begin
        self._cycles: list[tuple[float, list[tuple[int, float, float]]]] = []
        self._jobs: set[int] = set()               # the jobs moved within the window
        self._last_now: float | None = None
        self._warned_at: float | None = None
        self.last: dict[str, Any] | None = None     # the last warning (``status.json``'s ``other_agent``)

    def check(self, jobs: Iterable[Job], asked: Mapping[int, Sequence[float]], now: float,
              requeued: Collection[int] = ()) -> dict[str, Any] | None:
        """Compare this cycle's pending fabric jobs with the last cycle's (``asked``: the begin times this
        agent asked for, per job; ``requeued``: its own victims); the fields of an ``agent.other_agent``
        record when one is due."""
        seen: dict[int, float] = {}
        moved: list[tuple[int, float, float]] = []
        since = now if self._last_now is None else self._last_now  # the moves happened in (since, now]
        for job in jobs:
            plain = job.pending and not job.flags and job.job_id not in requeued  # no requeue under way
            if not (plain and job.fabric_marked and job.begin_time is not None):
                continue
            seen[job.job_id] = begin = job.begin_time
            before = self._seen.get(job.job_id)
            if before is None or abs(begin - before) <= DEFERRAL_SLACK_S or begin <= now + DEFERRAL_SLACK_S:
                continue
            if not any(abs(begin - t) <= DEFERRAL_SLACK_S for t in asked.get(job.job_id, ())):
                moved.append((job.job_id, begin - now - DEFERRAL_SLACK_S, begin - since + DEFERRAL_SLACK_S))
        self._seen, self._last_now = seen, now
        self._cycles = [c for c in self._cycles if now - c[0] < WINDOW_S]
        if not self._cycles:
            self._jobs.clear()
            self.last = None  # no move by someone else for a whole window: the warning no longer holds
        if moved:
            self._cycles.append((now, moved))
            self._jobs.update(j for j, _, _ in moved)
        return self._warning(now)

    def _at_cadence(self) -> int:
        """The cycles in the window whose every move is one of its job's renewals: the job was moved in
        another cycle too, to the same offset after the move (the offset ranges overlap) within an agent's
        ``fallback_s`` range (:data:`~fabric_hpc.slurm.limits.FALLBACK_S`)."""
        lo_s, hi_s = FALLBACK_S
        offsets: dict[int, list[tuple[int, float, float]]] = {}
        for i, (_, moves) in enumerate(self._cycles):
            for job, lo, hi in moves:
                if hi >= lo_s and lo <= hi_s:
                    offsets.setdefault(job, []).append((i, lo, hi))

        def renewal(i: int, job: int, lo: float, hi: float) -> bool:
            return any(k != i and lo <= b and a <= hi for k, a, b in offsets.get(job, ()))

        return sum(all(renewal(i, *m) for m in moves) for i, (_, moves) in enumerate(self._cycles))

    def _warning(self, now: float) -> dict[str, Any] | None:
        """The warning's fields when the window holds enough evidence (and none was written lately)."""
        if len(self._cycles) < FOREIGN_CYCLES:
            return None
        if len(self._jobs) < 2 and self._at_cadence() < FOREIGN_CYCLES:
            return None  # one job, moved at no agent's cadence: its user's own `scontrol update StartTime=`
        if self._warned_at is not None and now - self._warned_at < WINDOW_S:
            return None
        self._warned_at = now
        shown = sorted(self._jobs)[:JOBS_SHOWN]
        self.last = {"jobs": shown, "cycles": len(self._cycles), "ts": now}
        return {"jobs": shown, "cycles": len(self._cycles),
                "detail": (f"the begin times of {len(self._jobs)} waiting fabric job(s) were renewed to "
                           f"times this agent never set, in {len(self._cycles)} cycles within "
                           f"{int(WINDOW_S)} s: "
                           "another fabric agent is placing and deferring the same jobs (a second agent "
                           "with another --state-dir); both place the same gangs, and each takes the "
                           "other's deferrals for the user's own --begin"),
                "hint": HINT}
