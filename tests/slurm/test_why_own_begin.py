"""`fabric slurm why` on a job with its own --begin that the agent took over: it printed the agent's
deferral (the user's begin + ``fallback_s``, Slurm's StartTime now) as the time the job "may not start
before", and without the date for a time on another day. It says the user's own time now, which the agent
keeps in ``deferrals.json`` (also across its restarts), with the date when that is not today."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from fabric_hpc.slurm.actions import Actions
from fabric_hpc.slurm.deferral_store import DEFERRALS_FILE, DeferralStore, own_begins
from fabric_hpc.slurm.view import PinRules
from tests.slurm.test_agent_actions import Fake
from tests.slurm.test_why_probe_fixes import _why, audit, gang

FALLBACK = 20.0


def _stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _taken_over(tmp_path: Path, job_id: int, begin: float, pin: tuple[str, ...] = ()) -> Path:
    """The agent's memory after it took over the job's --begin ``begin`` (deferred to begin + fallback), with
    the ``pin`` it set before (a requeued job keeps its pin)."""
    actions = Actions(Fake([]), lambda *a, **k: None)
    if pin:
        actions.pins[job_id] = frozenset(pin)
    actions.waits[job_id], actions.deferrals[job_id], actions.asked[job_id] = begin, begin + FALLBACK, [begin]
    DeferralStore(tmp_path).save(actions)
    return tmp_path


def test_the_agent_keeps_a_taken_over_begin_across_a_restart(tmp_path: Path) -> None:
    begin = time.time() + 3600
    _taken_over(tmp_path, 7, begin)
    assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]["7"]["begin"] == begin
    back = Actions(Fake([]), lambda *a, **k: None)
    assert DeferralStore(tmp_path).load(back) is None
    assert back.waits == {7: begin} and back.deferrals == {7: begin + FALLBACK}
    assert own_begins(tmp_path) == {7: begin}
    # the restarted agent still waits for the user's time (before: its own deferral matched, placed at once)
    job = gang(7, begin_time=begin + FALLBACK)
    pins = PinRules(fallback_s=FALLBACK, deferrals=back.deferrals, waits=back.waits)
    assert pins.not_before(job, time.time()) == begin


def test_why_says_the_users_begin_not_the_agents_deferral(tmp_path: Path) -> None:
    now = time.time()
    begin = now + 600
    state = _taken_over(tmp_path, 8, begin)
    audit(state, ("agent.waiting", now - 1, {"jobs": {"8": "BeginTime"}}))
    text, _ = _why(gang(8, reason="BeginTime", begin_time=begin + FALLBACK), state)
    said = dt.datetime.fromtimestamp(begin).strftime("%H:%M:%S")
    assert f"It may not start before {said} " in text or f"before {_stamp(begin)} " in text, text
    assert dt.datetime.fromtimestamp(begin + FALLBACK).strftime("%H:%M:%S") not in text, text


def test_why_gives_the_date_of_a_begin_on_another_day(tmp_path: Path) -> None:
    now = time.time()
    begin = now + 3 * 86400
    state = _taken_over(tmp_path, 9, begin)
    audit(state, ("agent.waiting", now - 1, {"jobs": {"9": "BeginTime"}}))
    text, _ = _why(gang(9, reason="BeginTime", begin_time=begin + FALLBACK), state)
    assert f"It may not start before {_stamp(begin)} (its own --begin" in text, text


def test_why_gives_the_date_of_a_pinned_jobs_begin_on_another_day(tmp_path: Path) -> None:
    now = time.time()
    begin = now + 2 * 86400
    state = _taken_over(tmp_path, 10, begin, pin=("n1", "n2"))
    audit(state, ("agent.waiting", now - 1, {"jobs": {"10": "BeginTime"}}))
    job = gang(10, reason="BeginTime", req_nodes=("n1", "n2"), begin_time=begin + FALLBACK)
    text, _ = _why(job, state)
    assert f"It may not start before {_stamp(begin)} (Slurm's delay" in text, text


def test_without_the_agents_memory_why_says_slurms_begin_time(tmp_path: Path) -> None:
    """No deferrals.json (another host, no state dir): Slurm's begin time, with its date."""
    now = time.time()
    begin = now + 86400 + 60
    audit(tmp_path, ("agent.waiting", now - 1, {"jobs": {"11": "BeginTime"}}))
    text, _ = _why(gang(11, reason="BeginTime", begin_time=begin), tmp_path)
    assert f"It may not start before {_stamp(begin)}" in text, text
