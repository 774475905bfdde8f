"""``agent.other_agent`` needs evidence another agent would leave: begin times moved for at least two jobs,
or moved for one job at an agent's renewal cadence (to about the time of the move plus ``fallback_s``).
A user who moves one of their own jobs (``scontrol update StartTime=``) three times in 15 minutes raised
the alarm, and ``status.json`` kept it for the rest of the agent's life; it now also clears once no
foreign move was seen for a whole window. The cadence is any constant offset, not this agent's own
fallback_s (a stray agent may have another)."""

from __future__ import annotations

import pytest

from fabric_hpc.slurm.contract import Job
from fabric_hpc.slurm.other_agent import WINDOW_S, OtherAgentWatch

FALLBACK = 60.0
T0 = 1_000_000.0


def _job(job_id: int, begin: float) -> Job:
    return Job(job_id=job_id, name="g", state="PENDING", comment="fabric", user="mallory", begin_time=begin)


def _run(watch: OtherAgentWatch, moves: dict[int, list[tuple[int, float]]], cycles: int,
         start: float = T0) -> list[dict]:
    """``cycles`` cycles 2 s apart; ``moves``: cycle -> (job, begin time set then, as seconds from the
    cycle's time). Each job starts an hour out; the warnings written."""
    begins = {j: start + 3600.0 for moved in moves.values() for j, _ in moved}
    warnings = []
    for cycle in range(cycles):
        now = start + 2.0 * cycle
        for job_id, ahead in moves.get(cycle, []):
            begins[job_id] = now - 1.0 + ahead  # moved a second before this cycle read it
        if found := watch.check([_job(j, b) for j, b in begins.items()], {}, now):
            warnings.append(found)
    return warnings


def test_one_job_moved_by_its_own_user_is_not_another_agent() -> None:
    watch = OtherAgentWatch()
    assert _run(watch, {1: [(42, 3700.0)], 3: [(42, 3760.0)], 5: [(42, 3820.0)], 7: [(42, 3880.0)]}, 9) == []
    assert watch.last is None


def test_one_job_renewed_at_an_agents_cadence_is_another_agent() -> None:
    watch = OtherAgentWatch()
    found = _run(watch, {1: [(42, 3700.0)], 3: [(42, FALLBACK)], 5: [(42, FALLBACK)], 7: [(42, FALLBACK)]}, 9)
    assert len(found) == 1 and found[0]["jobs"] == [42] and watch.last is not None


def test_two_jobs_moved_are_another_agent_and_the_status_clears_after_the_window() -> None:
    watch = OtherAgentWatch()
    found = _run(watch, {1: [(1, 3700.0), (2, 3700.0)], 3: [(1, 3760.0)], 5: [(2, 3820.0)]}, 7)
    assert len(found) == 1 and found[0]["jobs"] == [1, 2] and watch.last is not None
    later = T0 + 20.0 + WINDOW_S
    assert watch.check([], {}, later) is None  # no move by someone else for a whole window
    assert watch.last is None


@pytest.mark.parametrize("theirs", [10.0, 300.0, 3600.0])
def test_one_job_renewed_by_an_agent_with_another_fallback_is_another_agent(theirs: float) -> None:
    """The cadence used to be this agent's own fallback_s: a stray agent with another one renewing the only
    waiting job went unreported. Any constant offset from the move to the new begin time is a cadence."""
    watch = OtherAgentWatch()
    found = _run(watch, {1: [(42, 3700.0)], 3: [(42, theirs)], 5: [(42, theirs)], 7: [(42, theirs)]}, 9)
    assert len(found) == 1 and found[0]["jobs"] == [42]


def test_one_job_moved_by_hand_to_ever_other_offsets_is_not_another_agent() -> None:
    watch = OtherAgentWatch()
    aheads = (600.0, 60.0, 1800.0, 120.0, 7200.0, 30.0)
    moves = {c: [(42, ahead)] for c, ahead in zip(range(1, 13, 2), aheads)}
    assert _run(watch, moves, 13) == []
