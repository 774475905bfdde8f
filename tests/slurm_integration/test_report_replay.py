"""``fabric slurm report`` on recorded Slurm answers (no Slurm needed): a golden JSON of the report's
data per recorded Slurm version (cli and rest answers give the same), the agent's audit log read as
untrusted input, host mismatches and unusable nodes, and the watch loop.

Regenerate the goldens after an intended change with ``FABRIC_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import report
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.replay import ReplayClient
from fabric_hpc.topology import build, generators
from fabric_hpc.topology.report import JOB_PALETTE
from tests.slurm_integration.test_agent_replay import HERE, VERSIONS, recorded
from tests.topology.test_report_browser import driver  # noqa: F401 (fixture)

NOW = 1796313800.0  # a minute after both recordings


@pytest.fixture(scope="module")
def fab():
    """The fabric the answers were recorded on (tests/conftest.py's slurm_fabric)."""
    return build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))


def client(version: str, rest: bool = False) -> ReplayClient:
    nodes, jobs = recorded(version, rest)
    return ReplayClient(json.dumps(nodes), json.dumps(jobs))


def audit_log(state_dir, lines: list[str]) -> None:
    state_dir.mkdir(exist_ok=True)
    (state_dir / "decisions.jsonl").write_text("".join(line + "\n" for line in lines))


def decisions() -> list[str]:
    """What the agent wrote for the recorded jobs: it started (no tier map), placed job 1, job 3 waits."""
    return [json.dumps({"ts": 1796313600.0, "event": "agent.start", "pid": 1, "config": {"tier_map": []}}),
            json.dumps({"ts": 1796313700.5, "event": "agent.place", "job": 1, "hosts": ["n7", "n10"],
                        "gpus": [], "cost": 12.5, "domains": {"leaf": 2}, "solver": "greedy", "breakdown": {}}),
            json.dumps({"ts": 1796313790.0, "event": "agent.waiting", "jobs": {"3": "Compact"}})]


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_report_data(fab, version, tmp_path):
    audit_log(tmp_path / "agent", decisions())
    out = {}
    for rest in (False, True):
        c = client(version, rest)
        rep = report.build(fab, c.nodes(), c.jobs(), now=NOW, agent=report.read_agent_log(tmp_path / "agent"),
                           backend="replay")
        out[rest] = rep
    assert out[False].data == out[True].data  # squeue/scontrol and slurmrestd answers agree
    assert out[False].occupancy == out[True].occupancy
    golden = HERE / f"slurm-{version}" / "report.json"
    data = json.loads(json.dumps(out[False].data))
    if os.environ.get("FABRIC_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(data, indent=1) + "\n")
    assert data == json.loads(golden.read_text())
    # what the golden says, in words: job 1 (2 × 3 GPUs on n7,n10, two leaves where one would do,
    # placed by the agent), job 2 whole n1; 3 and 5 wait, 4 is held
    run = {r["job"]: r for r in data["running"]}
    assert run["1"]["hosts"] == ["n7", "n10"] and run["1"]["gpus"] == 6 and run["1"]["spread"]
    assert run["1"]["spans"]["leaf"] == 2 and run["1"]["min_spans"]["leaf"] == 1
    assert run["1"]["decision"]["solver"] == "greedy" and run["1"]["decision"]["same_hosts"]
    assert run["2"]["decision"] is None and run["2"]["cost"]["comm_ms"] < run["1"]["cost"]["comm_ms"]
    pend = {p["job"]: p for p in data["pending"]}
    assert pend["3"]["agent_reason"] == "Compact" and pend["5"]["slurm_reason"] == "Resources"
    h = data["health"]
    assert h["waiting_gangs"] == 2 and h["free_gpus"] == 128 - 14
    assert h["stranded_gpus"] == 10  # n7 and n10 have 5 free, every waiting gang needs 8 per node
    assert h["spread_gangs"] == 1 and h["multi_host_gangs"] == 1
    occ = out[False].occupancy
    assert [occ[f"n7/gpu{i}"] for i in range(4)] == ["1", "1", "1", "free"]
    assert {occ[f"n1/gpu{i}"] for i in range(8)} == {"2"}


@pytest.mark.parametrize("version", VERSIONS)
def test_page_from_recorded_answer(fab, version, tmp_path):
    out = report.write(client(version), fab, tmp_path / "c.html", now=NOW)
    page = (tmp_path / "c.html").read_text()
    assert '"cluster":{"generated":"2026-12-03 16:03:20 UTC"' in page
    assert {r["job"]: r["color"] for r in out["running"]} == {"1": JOB_PALETTE[0], "2": JOB_PALETTE[1]}
    assert out["allocated"] == 14 and out["down"] == 0 and out["warnings"] == []


def test_hosts_slurm_and_the_model_disagree_on_are_warnings(fab):
    nodes = [Node(name=h, state="idle", gpus=8) for h in fab.hosts[2:]] + [
        Node(name="gpu-x1", state="idle", gpus=8), Node(name="n3", state="drained", flags=("DRAIN",), gpus=8)]
    nodes = [n for n in nodes if not (n.name == "n3" and n.state == "idle")]
    rep = report.build(fab, nodes, [], now=NOW)
    w = rep.data["warnings"]
    assert any("the fabric model does not" in x and "gpu-x1" in x for x in w)
    assert any("Slurm does not know (drawn as down): n[1-2]" in x for x in w)
    assert rep.data["nodes"] == [{"node": "n3", "state": "drained", "flags": ["DRAIN"]}]
    assert {rep.occupancy[f"{h}/gpu0"] for h in ("n1", "n2", "n3")} == {"down"}
    assert rep.occupancy["n4/gpu0"] == "free"


def test_jobs_on_gpus_the_model_lacks_are_warnings(fab):
    from fabric_hpc.slurm.contract import Job

    jobs = [Job(job_id=7, name="a", state="RUNNING", node_list=("n1", "zz9"), gpus={"n1": (0, 9), "zz9": (0,)}),
            Job(job_id=8, name="b", state="RUNNING", node_list=("n1",), gpus={"n1": (0, 1)})]
    nodes = [Node(name=h, state="mixed", gpus=8, gpus_used=(0, 1, 2) if h == "n1" else ()) for h in fab.hosts]
    rep = report.build(fab, nodes, jobs, now=NOW)
    w = " | ".join(rep.data["warnings"])
    assert "job 7 runs on node(s) the fabric model does not have: zz9" in w
    assert "job 7 holds GPU(s) the fabric model does not have: n1/gpu9" in w
    assert "job 8 holds GPU(s) another job holds too (drawn for the first): n1/gpu0" in w
    assert "1 GPU(s) are in use according to their node but no job Slurm listed holds them" in w
    assert [rep.occupancy[f"n1/gpu{i}"] for i in range(4)] == ["7", "8", "slurm:unattributed", "free"]


def test_running_jobs_without_gpu_indices_are_listed(fab):
    from fabric_hpc.slurm.contract import Job

    nodes = [Node(name=h, state="mixed", gpus=8) for h in fab.hosts]
    jobs = [Job(job_id=21, name="cpu", state="RUNNING", node_list=("n1", "n2")),
            Job(job_id=22, name="nodetail", state="RUNNING", gpus_per_node=2, node_list=("n3",))]
    rep = report.build(fab, nodes, jobs, now=NOW)
    run = {r["job"]: r for r in rep.data["running"]}
    assert run["21"]["hosts"] == ["n1", "n2"] and run["21"]["gpus"] == 0 and run["21"]["cost"] is None
    assert run["22"]["hosts"] == ["n3"] and not run["22"]["spread"]
    assert rep.data["warnings"] == ["job 22 asked for 2 GPU(s) per node but Slurm reported no GPU indices for it "
                                    "(listed without GPUs)"]
    assert rep.data["health"]["multi_host_gangs"] == 0 and set(rep.occupancy.values()) == {"free"}


def test_draining_node_keeps_its_jobs_colour(fab):
    from fabric_hpc.slurm.contract import Job

    nodes = [Node(name=h, state="mixed" if h == "n2" else "idle", flags=("DRAIN",) if h == "n2" else (), gpus=8)
             for h in fab.hosts]
    jobs = [Job(job_id=3, name="x", state="RUNNING", node_list=("n2",), gpus={"n2": (0, 1)})]
    rep = report.build(fab, nodes, jobs, now=NOW)
    assert [rep.occupancy[f"n2/gpu{i}"] for i in range(3)] == ["3", "3", "down"]
    assert rep.data["nodes"] == [{"node": "n2", "state": "mixed", "flags": ["DRAIN"]}]


def test_audit_log_is_untrusted(tmp_path, monkeypatch):
    d = tmp_path / "agent"
    audit_log(d, ['{"ts": 1, "event": "agent.place", "job": 4, "solver": "cpsat", "cost": 2, "hosts": ["n1"]}',
                  "not json", "[1, 2]", '{"event": "agent.place", "job": 5}',  # no ts
                  '{"ts": 2, "event": "agent.place", "job": true, "hosts": 3}',
                  '{"ts": 3, "event": "agent.waiting", "jobs": {"6": "Compact", "x": 1, "9999999999999999999999": 2}}',
                  '{"ts": 4, "event": "agent.place", "job": 6, "cost": NaN, "hosts": "n1"}',
                  '{"ts": 5, "event": "agent.pl'])  # torn last line: a write in progress
    (d / "decisions.jsonl").write_text((d / "decisions.jsonl").read_text().rstrip("\n"))
    log = report.read_agent_log(d)
    assert set(log.placed) == {4, 6} and log.placed[4]["solver"] == "cpsat" and log.placed[4]["cost"] == 2.0
    assert log.placed[6]["cost"] is None and log.placed[6]["hosts"] == []
    assert set(log.waiting) == {6} and log.damaged == 3 and not log.truncated
    # only the end of a long log is read
    monkeypatch.setattr(report, "MAX_AUDIT_BYTES", 200)
    log = report.read_agent_log(d)
    assert log.truncated and 4 not in log.placed and 6 in log.placed
    with pytest.raises(ConfigError, match="no agent state directory"):
        report.read_agent_log(tmp_path / "nope")
    assert report.read_agent_log(tmp_path).placed == {}  # a directory without a log: nothing to say


def test_an_unreadable_audit_log_exits_as_any_other_path(tmp_path, monkeypatch):
    """A directory where the log belongs is a wrong path (3); no permission is an external error
    (5), as everywhere else (README); it was 3."""
    from fabric_hpc.errors import ExternalError

    bad = tmp_path / "dir"
    (bad / "decisions.jsonl").mkdir(parents=True)
    with pytest.raises(ConfigError, match="audit log .*is a directory") as info:
        report.read_agent_log(bad)
    assert info.value.exit_code == 3
    audit_log(tmp_path / "agent", ['{"ts": 1, "event": "agent.place", "job": 4, "hosts": ["n1"]}'])
    real_open = open

    def denied(path, *a, **k):  # root reads any file: the refusal a non-root reader gets
        if str(path).endswith("decisions.jsonl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(ExternalError, match="cannot read the agent's audit log .*Permission denied") as info:
        report.read_agent_log(tmp_path / "agent")
    assert info.value.exit_code == 5


def test_watch_rewrites_until_stopped_and_survives_errors(fab, tmp_path):
    from fabric_hpc.slurm.contract import SlurmError

    stop, calls, errors = threading.Event(), [], []

    def once():
        calls.append(1)
        if len(calls) == 2:
            raise SlurmError("slurmctld is down")
        if len(calls) == 4:
            stop.set()

    assert report.watch(once, 0.01, on_error=errors.append, stop=stop, signals=False) == 4
    assert [e.message for e in errors] == ["slurmctld is down"]


@pytest.mark.browser
def test_page_job_focus_from_both_tables(fab, tmp_path, driver):  # noqa: F811
    """Clicking a running job (cluster table or sidebar) dims every other GPU; a hostile job name is text."""
    from fabric_hpc.slurm.contract import Job
    from tests.topology.test_report_browser import _open

    nodes = [Node(name=h, state="mixed", gpus=8) for h in fab.hosts]
    jobs = [Job(job_id=11, name="<img src=x onerror=alert(1)></script>", state="RUNNING", node_list=("n1", "n2"),
                gpus={"n1": (0, 1), "n2": (0, 1)}),
            Job(job_id=12, name="<!--<script>", state="RUNNING", node_list=("n5",), gpus={"n5": (3,)})]
    out = tmp_path / "c.html"
    report.write(ReplayClientFor(nodes, jobs), fab, out, now=NOW)
    assert _open(driver, out) == []
    row = driver.find_element("css selector", '#running-jobs tr.run-row[data-job="11"]')
    assert "<img src=x onerror=alert(1)></script>" in row.text
    row.click()
    lit = driver.find_elements("css selector", ".gpu:not(.dim)")
    assert len(lit) == 4 and "focus" in row.get_attribute("class")
    driver.find_element("css selector", '#jobs tr.job-row[data-job="12"]').click()
    assert len(driver.find_elements("css selector", ".gpu:not(.dim)")) == 1
    assert "focus" not in driver.find_element("css selector", '#running-jobs tr[data-job="11"]').get_attribute("class")
    assert "focus" in driver.find_element("css selector", '#running-jobs tr[data-job="12"]').get_attribute("class")


@pytest.mark.browser
def test_page_long_job_names_stay_in_their_column(fab, tmp_path, driver):  # noqa: F811
    """Names as long as the report keeps (200 characters) are cut with an ellipsis: the running and
    pending tables fit their panels, the whole name is the cell's title."""
    from fabric_hpc.slurm.contract import Job
    from tests.topology.test_report_browser import _open

    name = "n" * 300
    nodes = [Node(name=h, state="mixed", gpus=8) for h in fab.hosts]
    jobs = [Job(job_id=11, name=name, user="u" * 64, state="RUNNING", node_list=("n1",), gpus={"n1": (0, 1)}),
            Job(job_id=12, name=name, state="PENDING", nodes=2, gpus_per_node=8)]
    out = tmp_path / "c.html"
    report.write(ReplayClientFor(nodes, jobs), fab, out, now=NOW)
    assert _open(driver, out) == []
    for table in ("running-jobs", "pending-jobs"):
        box = driver.find_element("css selector", f"#{table}").find_element("xpath", "..")
        assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", box), table
        assert driver.find_element("css selector", f"#{table} .nm[title^=nnn]").get_attribute("title") == name[:200]


class ReplayClientFor(ReplayClient):
    """A client answering with given records (the page test needs no JSON shapes)."""

    def __init__(self, nodes, jobs):
        super().__init__("{}", "{}")
        self._n, self._j = nodes, jobs

    def nodes(self):
        return self._n

    def jobs(self):
        return self._j


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_watch_says_what_each_cycle_wrote(fab, tmp_path, monkeypatch, capsys, as_json):
    """``--watch`` prints a summary line per cycle (``--json``: one JSON document per line)."""
    import threading

    from fabric_hpc.cli import slurm as cli_slurm
    from fabric_hpc.cli.main import main
    from fabric_hpc.topology import save_spec

    spec = tmp_path / "fab.yaml"
    save_spec(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8), spec)
    monkeypatch.setattr(cli_slurm, "_client", lambda *a: client(VERSIONS[-1]))
    real, stop, calls = report.watch, threading.Event(), []

    def two_more(once, interval_s, **kw):
        def counted():
            once()
            calls.append(1)
            if len(calls) == 2:
                stop.set()
        return real(counted, 0.01, **{**kw, "stop": stop, "signals": False})

    monkeypatch.setattr(report, "watch", two_more)
    args = ["slurm", "report", "--topology", str(spec), "--out", str(tmp_path / "c.html"), "--watch", "1"]
    assert main(args + (["--json"] if as_json else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    if as_json:
        assert all(json.loads(line)["html"] == str(tmp_path / "c.html") for line in lines)
    else:
        assert all(line.startswith(f"wrote {tmp_path / 'c.html'}") for line in lines)


@pytest.mark.browser
def test_page_waits_are_days_and_hours(fab, tmp_path, driver):  # noqa: F811
    """150,050 s waited reads "1 d 17 h" (the seconds on hover), not "150,050 s"."""
    from fabric_hpc.slurm.contract import Job
    from tests.topology.test_report_browser import _open

    nodes = [Node(name=h, state="idle", gpus=8) for h in fab.hosts]
    jobs = [Job(job_id=21, name="a", state="PENDING", nodes=1, gpus_per_node=8, submit_time=NOW - 150_050),
            Job(job_id=22, name="b", state="PENDING", nodes=1, gpus_per_node=8, submit_time=NOW - 725)]
    out = tmp_path / "c.html"
    report.write(ReplayClientFor(nodes, jobs), fab, out, now=NOW)
    assert _open(driver, out) == []
    cells = [r.find_elements("css selector", "td")[-1] for r in driver.find_elements("css selector", "#pending-jobs tr.pend-row")]
    assert [c.text for c in cells] == ["1 d 17 h", "12 min 5 s"]
    assert cells[0].find_element("css selector", "span").get_attribute("title") == "150,050 s"
