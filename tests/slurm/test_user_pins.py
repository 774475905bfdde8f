"""A ReqNodeList the agent did not set (``scontrol update JobId=N ReqNodeList=...`` by a user or an admin on a
fabric job the agent defers) is someone else's: the agent hands the job to Slurm keeping it
(``StartTime=now`` only, one ``agent.handoff``), and never pins it elsewhere, clears it at a hold, at its
stop or after a requeue.
Before 2026-12-07 the agent's next pin silently replaced it. The agent's own pins are kept in
``deferrals.json`` (a restarted agent still knows them), and ``fabric slurm why`` says whose list it is.
Live: tests/slurm_integration/test_agent_user_pin_live.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from fabric_hpc.slurm.actions import USER_PIN, Actions
from fabric_hpc.slurm.deferral_store import DEFERRALS_FILE, DeferralStore, own_pins
from tests.slurm.test_agent_actions import Fake, agent, events, gang, pinned_by
from tests.slurm.test_why_probe_fixes import _why, audit


def test_a_deferred_job_pinned_by_someone_else_is_handed_to_slurm_keeping_the_list(tmp_path: Path) -> None:
    now = time.time()
    theirs = gang(1, begin_time=now + 50, req_nodes=("n1", "n16"))  # deferred; the user's -w by update
    client = Fake([theirs])
    a = agent(tmp_path, client)
    a.actions.deferrals[1] = now + 50  # the agent's own deferral (a renewal)
    res = a.cycle(now=now)
    assert res.started == [] and client.calls == [("update", 1, {"StartTime": "now"})]  # before: pinned anew
    (hand,) = [e for e in events(tmp_path) if e["event"] == "agent.handoff"]
    assert hand["job"] == 1 and hand["reason"].startswith(f"{USER_PIN} (n[1,16])"), hand
    client._jobs = [replace(theirs, begin_time=now)]  # eligible now, still pending (hosts busy elsewhere)
    a.cycle(now=now + 1)
    assert len(client.calls) == 1  # handed over once; never pinned, deferred or cleared


def test_an_eligible_job_pinned_by_someone_else_keeps_its_hosts_free_for_it(tmp_path: Path) -> None:
    now = time.time()
    theirs = gang(1, begin_time=now - 1, req_nodes=("n1", "n16"))  # handed over: Slurm starts it there
    client = Fake([theirs, gang(2, nodes=15), gang(3, nodes=14)])
    a = agent(tmp_path, client)
    a.actions.handed_off.add(1)
    res = a.cycle(now=now)
    assert [s["job"] for s in res.started] == [3] and not {"n1", "n16"} & set(res.started[0]["hosts"])
    assert not [c for c in client.calls if c[1] == 1]


def test_a_pin_moved_by_someone_else_is_theirs_and_the_agents_own_stays_its(tmp_path: Path) -> None:
    now = time.time()
    moved = gang(1, begin_time=now - 1, req_nodes=("n5", "n6"))
    own = gang(2, begin_time=now - 1, req_nodes=("n3", "n4"))
    client = Fake([moved, own])
    a = agent(tmp_path, client)
    a.actions.pins.update({1: frozenset({"n1", "n2"}), 2: frozenset({"n3", "n4"})})  # the agent pinned both
    a.cycle(now=now)
    assert client.calls == [("update", 1, {"StartTime": "now"})]  # job 2 keeps the agent's pin, holds n3, n4


def test_a_list_someone_else_set_keeps_their_begin_time_too(tmp_path: Path) -> None:
    """``scontrol update StartTime=now+1day ReqNodeList=...``: the hand-over sent StartTime=now, so the job
    could start a day early (the reviewer's finding); a begin time that is no fabric deferral is kept."""
    now = time.time()
    theirs = gang(1, begin_time=now + 86_400, req_nodes=("n1", "n16"))  # neither the plugin's nor the agent's
    client = Fake([theirs])
    a = agent(tmp_path, client)
    a.cycle(now=now)
    assert [c for c in client.calls if c[2]] == []  # nothing to send: the list and the begin time are theirs
    (hand,) = [e for e in events(tmp_path) if e["event"] == "agent.handoff"]
    assert hand["job"] == 1 and hand["reason"].startswith(USER_PIN)
    a.cycle(now=now + 1)
    assert len([e for e in events(tmp_path) if e["event"] == "agent.handoff"]) == 1  # once


def test_a_held_job_keeps_a_list_someone_else_set(tmp_path: Path) -> None:
    now = time.time()
    held = gang(1, begin_time=now + 50, req_nodes=("n1", "n2"), priority=0, reason="JobHeldUser")
    client = Fake([held])
    a = agent(tmp_path, client)
    a.actions.deferrals[1] = now + 50  # the agent's own deferral
    res = a.cycle(now=now)
    assert res.unpinned == {} and client.calls == [("update", 1, {"StartTime": "now"})]  # before: cleared


def test_the_stop_releases_only_the_agents_own_pins(tmp_path: Path) -> None:
    now = time.time()
    own, theirs = gang(1, begin_time=now - 1, req_nodes=("n1", "n2")), gang(2, req_nodes=("n3", "n4"))
    client = Fake([own, theirs])
    a = pinned_by(agent(tmp_path, client), [own])
    assert a.release_pins() == [1]
    assert ("update", 2, {"ReqNodeList": ""}) not in client.calls  # before: released too


def test_a_requeued_victim_keeps_a_list_the_agent_did_not_set() -> None:
    client = Fake([])
    Actions(client, lambda *a, **k: None).apply([5], [], {}, [], 60)
    assert client.calls == [("requeue", 5, {})]  # no ReqNodeList="" after it


def test_the_agents_pins_survive_a_restart_and_why_tells_them_apart(tmp_path: Path) -> None:
    actions = Actions(Fake([]), lambda *a, **k: None)
    actions.pins[3] = frozenset({"n1", "n2", "n4"})
    DeferralStore(tmp_path).save(actions)
    assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["jobs"]["3"]["pin"] == "n[1-2,4]"
    back = Actions(Fake([]), lambda *a, **k: None)
    assert DeferralStore(tmp_path).load(back) is None and back.pins == actions.pins
    assert own_pins(tmp_path) == {3: frozenset({"n1", "n2", "n4"})}
    audit(tmp_path, ("agent.waiting", time.time() - 1, {"jobs": {"3": "Resources"}}))
    text, _ = _why(gang(3, begin_time=time.time() - 1, req_nodes=("n1", "n2", "n4")), tmp_path)
    assert "set by someone else" not in text and "pinned it to n[1-2,4]" in text, text
    text, _ = _why(gang(3, begin_time=time.time() - 1, req_nodes=("n7", "n8")), tmp_path)
    assert "Its ReqNodeList (n[7-8]) was set by someone else (scontrol update)" in text, text
    assert "The fabric agent pinned it" not in text, text


def test_a_damaged_pin_in_the_file_ignores_the_file(tmp_path: Path) -> None:
    (tmp_path / DEFERRALS_FILE).write_text(json.dumps(
        {"format": "fabric-agent-deferrals/2", "jobs": {"3": {"asked": [], "pin": "n[3-1]"}}}))
    why = DeferralStore(tmp_path).load(Actions(Fake([]), lambda *a, **k: None))
    assert why is not None and why.startswith("damaged"), why
    assert own_pins(tmp_path) is None


def test_pins_sent_after_the_files_last_save_are_recovered_from_the_audit_log(tmp_path: Path) -> None:
    """kill -9 between a cycle's pins (written ahead to the audit log, then sent) and its deferrals.json
    save: the restarted agent took its own pins for someone else's and handed those jobs to Slurm."""
    import os

    saved = Actions(Fake([]), lambda *a, **k: None)
    saved.pins[3] = frozenset({"n1", "n2"})
    DeferralStore(tmp_path).save(saved)
    at = time.time() - 100
    doc = json.loads((tmp_path / DEFERRALS_FILE).read_text())
    (tmp_path / DEFERRALS_FILE).write_text(json.dumps({**doc, "saved": at}))  # the last save, 100 s ago
    os.utime(tmp_path / DEFERRALS_FILE, (at + 90, at + 90))  # an NFS server's clock 90 s ahead: not read
    audit(tmp_path, ("agent.place", at - 50, {"job": 4, "hosts": ["n7"], "gpus": []}),  # saved or gone
          ("agent.place", at + 50, {"job": 5, "hosts": ["n3", "n4"], "gpus": []}),  # lost by the kill
          ("agent.place", at + 51, {"job": True, "hosts": ["n9"]}), ("agent.unpin", at + 52, {"job": 3}))
    back = Actions(Fake([]), lambda *a, **k: None)
    store = DeferralStore(tmp_path)
    assert store.load(back) is None and store.recover_pins(back) == 1
    assert back.pins == {3: frozenset({"n1", "n2"}), 5: frozenset({"n3", "n4"})}
    now = time.time()
    client = Fake([gang(5, begin_time=now - 1, req_nodes=("n3", "n4"))])
    a = agent(tmp_path, client)
    a.actions.pins.update(back.pins)
    a.cycle(now=now)
    assert not [e for e in events(tmp_path) if e["event"] == "agent.handoff"]  # its own pin: kept, not handed
    empty = tmp_path / "none"
    empty.mkdir()
    assert DeferralStore(empty).recover_pins(Actions(Fake([]), lambda *a, **k: None)) == 0  # no log: nothing


def test_a_file_saved_without_its_time_falls_back_to_its_mtime(tmp_path: Path) -> None:
    """A /2 file of the release before this one has no ``saved``: its mtime stands for the save."""
    import os

    (tmp_path / DEFERRALS_FILE).write_text(json.dumps({"format": "fabric-agent-deferrals/2", "jobs": {}}))
    at = time.time() - 100
    os.utime(tmp_path / DEFERRALS_FILE, (at, at))
    audit(tmp_path, ("agent.place", at - 50, {"job": 4, "hosts": ["n7"], "gpus": []}),
          ("agent.place", at + 50, {"job": 5, "hosts": ["n3"], "gpus": []}))
    back = Actions(Fake([]), lambda *a, **k: None)
    store = DeferralStore(tmp_path)
    assert store.load(back) is None and store.recover_pins(back) == 1 and back.pins == {5: frozenset({"n3"})}


def test_a_save_time_in_the_future_reads_the_whole_tail_back(tmp_path: Path) -> None:
    """A clock stepped back after the save (or a failover host's clock behind the saver's): the save
    time says nothing; every pin of the log's tail is replayed, in order."""
    (tmp_path / DEFERRALS_FILE).write_text(json.dumps({"format": "fabric-agent-deferrals/2",
                                                      "saved": time.time() + 3600, "jobs": {}}))
    now = time.time()
    audit(tmp_path, ("agent.place", now - 60, {"job": 5, "hosts": ["n3"], "gpus": []}),
          ("agent.place", now - 50, {"job": 6, "hosts": ["n4"], "gpus": []}),
          ("agent.unpin", now - 40, {"job": 6}))
    back = Actions(Fake([]), lambda *a, **k: None)
    store = DeferralStore(tmp_path)
    assert store.load(back) is None and store.recover_pins(back) == 1 and back.pins == {5: frozenset({"n3"})}


def test_an_earlier_releases_deferrals_file_recovers_every_pin_of_the_log(tmp_path: Path) -> None:
    """An upgrade: the file of the release before (format /1) has no pins, and the agent's pins of jobs
    still pending were all taken for someone else's (handed to Slurm, never re-placed, kept at stop):
    every ``agent.place`` of the audit log's tail is read back, whatever its time."""
    import os

    (tmp_path / DEFERRALS_FILE).write_text(json.dumps({"format": "fabric-agent-deferrals/1",
                                                      "jobs": {"3": {"asked": [1.5e9]}}}))
    audit(tmp_path, ("agent.place", time.time() - 3600, {"job": 3, "hosts": ["n1", "n2"], "gpus": []}))
    os.utime(tmp_path / DEFERRALS_FILE)  # saved after the pin: a /2 file's time would leave it out
    back = Actions(Fake([]), lambda *a, **k: None)
    store = DeferralStore(tmp_path)
    assert store.load(back) is None and back.asked == {3: [1.5e9]} and back.pins == {}
    assert store.recover_pins(back) == 1 and back.pins == {3: frozenset({"n1", "n2"})}
    assert own_pins(tmp_path) is None  # why cannot tell whose a list is from such a file
    store.save(back)
    assert json.loads((tmp_path / DEFERRALS_FILE).read_text())["format"] == "fabric-agent-deferrals/2"
    assert own_pins(tmp_path) == {3: frozenset({"n1", "n2"})}


def test_the_recovery_replays_the_log_in_order(tmp_path: Path) -> None:
    """After an upgrade every agent.place of the tail is read: one unpinned or handed over later is no pin
    of the agent's any more (the reviewer's finding: a user's later list of those exact hosts was taken
    for the agent's own); a later place replaces an earlier one."""
    (tmp_path / DEFERRALS_FILE).write_text(json.dumps({"format": "fabric-agent-deferrals/1", "jobs": {}}))
    t = time.time() - 100
    audit(tmp_path, ("agent.place", t, {"job": 5, "hosts": ["n1", "n2"], "gpus": []}),
          ("agent.unpin", t + 1, {"job": 5, "reason": "held"}),
          ("agent.place", t + 2, {"job": 6, "hosts": ["n3"], "gpus": []}),
          ("agent.handoff", t + 3, {"job": 6, "reason": "x"}),
          ("agent.place", t + 4, {"job": 7, "hosts": ["n4"], "gpus": []}),
          ("agent.requeue", t + 5, {"job": 7, "for_job": 9, "gpu_hours_lost": 0.0}),  # its unpin may not be sent
          ("agent.place", t + 6, {"job": 8, "hosts": ["n5"], "gpus": []}),
          ("agent.place", t + 7, {"job": 8, "hosts": ["n6"], "gpus": []}))
    back = Actions(Fake([]), lambda *a, **k: None)
    store = DeferralStore(tmp_path)
    assert store.load(back) is None and store.recover_pins(back) == 2
    assert back.pins == {7: frozenset({"n4"}), 8: frozenset({"n6"})}


def test_a_taken_over_begin_is_restored_when_someone_else_pins_the_job(tmp_path: Path) -> None:
    """--begin B taken over by the agent (Slurm then holds B + fallback, the agent's deferral), then a user's
    ReqNodeList: the hand-over sends B again, not nothing (the job started fallback_s late) nor now."""
    now = time.time()
    theirs = gang(1, begin_time=now + 660, req_nodes=("n1", "n16"))  # the agent's deferral over B = now+600
    client = Fake([theirs])
    a = agent(tmp_path, client)
    a.actions.waits[1] = now + 600  # the user's own --begin the agent took over
    a.actions.deferrals[1] = now + 660
    a.cycle(now=now)
    (call,) = [c for c in client.calls if c[2]]
    assert call[1] == 1 and set(call[2]) == {"StartTime"}
    assert 590 <= int(call[2]["StartTime"].removeprefix("now+")) <= 600, call
