"""The live report's running table shows the agent's hand-over of a job to Slurm (an ``agent.handoff``
entry) with its reason in the "agent decision" column; before it showed "–" for such jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.topology import build, generators
from tests.topology.test_report_browser import _open, driver  # noqa: F401 (fixture)

FAB = build(generators.leaf_spine(4, hosts_per_leaf=4, gpus=8, cpus=8))


def _log(tmp_path: Path, entries: list[dict]) -> report.AgentLog:
    (tmp_path / "decisions.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return report.read_agent_log(tmp_path)


def _running(job_id: int, hosts: tuple[str, ...]) -> Job:
    return Job(job_id, f"j{job_id}", "RUNNING", comment="fabric", nodes=len(hosts), gpus_per_node=8,
               node_list=hosts, gpus={h: tuple(range(8)) for h in hosts}, start_time=300.0)


def test_a_handed_off_running_job_shows_the_reason(tmp_path: Path):
    log = _log(tmp_path, [
        {"event": "agent.place", "ts": 100.0, "job": 1, "hosts": ["n1"], "solver": "greedy", "cost": 1.0},
        {"event": "agent.place", "ts": 100.0, "job": 2, "hosts": ["n3", "n4"], "solver": "greedy", "cost": 2.0},
        {"event": "agent.handoff", "ts": 200.0, "job": 2, "reason": "Slurm did not start it on the hosts the "
                                                                    "agent pinned, 3 times"},
        {"event": "agent.handoff", "ts": 150.0, "job": 3, "reason": "job 3 --comment: within: no level 'pod'"},
    ])
    nodes = [Node(name=h, state="allocated", gpus=8, gpus_used=tuple(range(8))) for h in FAB.hosts]
    jobs = [_running(1, ("n1",)), _running(2, ("n2", "n3")), _running(3, ("n4",))]
    rows = {r["job"]: r["decision"] for r in report.build(FAB, nodes, jobs, now=400.0, agent=log).data["running"]}
    assert rows["1"]["solver"] == "greedy" and rows["1"]["same_hosts"] is True
    assert rows["2"]["handoff"].startswith("Slurm did not start it") and rows["2"]["time"]
    assert rows["3"]["handoff"] == "job 3 --comment: within: no level 'pod'"


@pytest.mark.browser
def test_the_page_shows_the_hand_over_in_the_agent_decision_column(tmp_path: Path, driver):  # noqa: F811
    from fabric_hpc.topology.report import write_report

    log = _log(tmp_path, [{"event": "agent.handoff", "ts": 150.0, "job": 3, "reason": "job 3 <b>within</b>"},
                          {"event": "agent.place", "ts": 100.0, "job": 1, "hosts": ["n1"], "solver": "greedy"}])
    nodes = [Node(name=h, state="mixed", gpus=8) for h in FAB.hosts]
    rep = report.build(FAB, nodes, [_running(1, ("n1",)), _running(3, ("n4",))], now=400.0, agent=log)
    page = tmp_path / "report.html"
    write_report(FAB, page, state=rep.state, cluster=rep.data, title="t")
    assert not _open(driver, page)
    cells = {r.get_attribute("data-job"): r.find_elements("tag name", "td")[-1].text
             for r in driver.find_elements("css selector", "#running-jobs tr.run-row")}
    assert cells["3"].startswith("handed to Slurm: job 3 <b>within</b>"), cells  # the reason as text
    assert cells["1"].startswith("greedy"), cells
