"""``fabric slurm report`` on the live cluster, opened in headless Chromium.

Gangs (placed by the agent) and single-GPU jobs run, a gang too big for the cluster waits, one node
is drained. The report built by the CLI must colour every GPU Slurm gave a job in that job's colour,
list the waiting gang with Slurm's and the agent's reason, show the drained node, and keep being
rewritten under ``--watch`` until SIGTERM/SIGINT end it with exit 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm.cli_backend import CliClient
from tests.slurm_integration.conftest import REPO
from tests.slurm_integration.test_client_contract import contract_cluster, restd  # noqa: F401 (fixtures)
from tests.topology.test_report_browser import _open, driver  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = REPO / "test-artifacts" / "slurm-report"


def fabric(cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], env={**cluster.env,
                          "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _waiting_logged(state_dir: Path, job: int) -> bool:
    path = state_dir / "decisions.jsonl"
    return path.exists() and any(str(job) in (e.get("jobs") or {}) for e in read_json_lines(path)
                                 if e.get("event") == "agent.waiting")


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, 1)"  # how selenium reports a computed colour


@pytest.fixture()
def busy_cluster(fabric_cluster, agent):
    """Two agent-placed gangs, two single-GPU jobs, a waiting 16-node gang, n16 drained."""
    c = fabric_cluster
    agent.start()
    c.run(["scontrol", "update", "NodeName=n16", "State=DRAIN", "Reason=report-test"])
    gangs: list[int] = []
    singles: list[int] = []
    try:
        gangs += [c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric", wrap="sleep 300"),
                  c.sbatch("-N3", "--gres=gpu:4", "--comment=fabric", wrap="sleep 300")]
        singles += [c.sbatch("-N1", "--gres=gpu:1", wrap="sleep 300") for _ in range(2)]
        for jid in gangs + singles:
            c.wait_job(jid, states=("RUNNING",), timeout=60)
        big = c.sbatch("-N16", "--gres=gpu:8", "--comment=fabric", wrap="sleep 1")
        deadline = time.monotonic() + 30
        while not _waiting_logged(agent.state_dir, big):
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.2)
        yield {"gangs": gangs, "singles": singles, "big": big, "agent": agent}
    finally:
        c.run(["scancel", *[str(j) for j in gangs + singles]], check=False)
        c.run(["scontrol", "update", "NodeName=n16", "State=RESUME"], check=False)


def test_live_report_in_chromium(busy_cluster, fabric_cluster, fabric_topology_file, driver, tmp_path):  # noqa: F811
    out, png = tmp_path / "cluster.html", tmp_path / "cluster.png"
    proc = fabric(fabric_cluster, "slurm", "report", "--topology", str(fabric_topology_file), "--out", str(out),
                  "--png", str(png), "--state-dir", str(busy_cluster["agent"].state_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jobs = {j.job_id: j for j in CliClient(fabric_cluster.env).jobs()}
    running = {int(r["job"]): r for r in summary["running"]}
    mine = busy_cluster["gangs"] + busy_cluster["singles"]
    assert set(mine) <= set(running)
    for jid in busy_cluster["gangs"]:  # the agent placed them: its decision is in the table
        assert running[jid]["decision"]["solver"] and running[jid]["decision"]["same_hosts"]
    assert summary["nodes"] == [{"node": "n16", "state": "idle", "flags": ["DRAIN"]}]
    big = str(busy_cluster["big"])
    pend = {p["job"]: p for p in summary["pending"]}
    # Slurm re-evaluates its reason every cycle (BeginTime, ReqNodeNotAvail, ...): the page shows what it read
    assert pend[big]["agent_reason"] and pend[big]["slurm_reason"]
    assert (pend[big]["nodes"], pend[big]["gpus_per_node"]) == (16, 8)

    from fabric_hpc.topology import load_fabric

    fab = load_fabric(fabric_topology_file)
    assert _open(driver, out) == []
    assert "made " in driver.find_element("id", "generated").text
    for jid in mine:  # every GPU Slurm gave the job carries the job's colour on the page
        row = driver.find_element("css selector", f'#running-jobs tr.run-row[data-job="{jid}"]')
        color = row.get_attribute("data-color")
        assert color == running[jid]["color"]
        cells = [driver.find_element("css selector", f'.gpu[data-g="{fab.gpu_pos[fab.host_gpus(h)[i]]}"]')
                 for h, idx in jobs[jid].gpus.items() for i in idx]
        assert len(cells) == running[jid]["gpus"] == sum(len(i) for i in jobs[jid].gpus.values())
        assert {c.value_of_css_property("background-color") for c in cells} == {_rgb(color)}
    n16 = driver.find_elements("css selector", '.host[data-host="n16"] .gpu')
    assert len(n16) == 8 and all("dn" in c.get_attribute("class") for c in n16)
    prow = driver.find_element("css selector", f'#pending-jobs tr.pend-row[data-job="{big}"]')
    assert pend[big]["slurm_reason"] in prow.text and pend[big]["agent_reason"] in prow.text
    assert "n16" in driver.find_element("id", "bad-nodes").text
    stranded = driver.find_element("id", "health-stranded").text
    assert stranded == f"{summary['health']['stranded_gpus']} / {summary['health']['free_gpus']}"
    _shots(driver)


def _shots(drv) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = drv.execute_script("return document.body.scrollHeight")
    drv.set_window_size(1500, min(height + 200, 4000))
    path = ARTIFACTS / "live-cluster.png"
    assert drv.save_screenshot(str(path))
    drv.set_window_size(1500, 1000)


def test_model_and_slurm_disagree_is_a_warning(fabric_cluster, tmp_path):
    proc = fabric(fabric_cluster, "slurm", "report", "--topology", "leaf-spine:hosts=12", "--out",
                  str(tmp_path / "c.html"))
    assert proc.returncode == 0, proc.stderr
    assert "warning: Slurm knows 4 node(s) the fabric model does not (not drawn): n[13-16]" in proc.stdout


def test_bad_state_dir_is_one_clear_line(fabric_cluster, fabric_topology_file, tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "decisions.jsonl").write_bytes(b"\x00\xff garbage\n" * 3 + b'{"ts": 1, "event": "x"}\n')
    proc = fabric(fabric_cluster, "slurm", "report", "--topology", str(fabric_topology_file), "--out",
                  str(tmp_path / "c.html"), "--state-dir", str(tmp_path / "agent"))
    assert proc.returncode == 0 and "3 damaged line(s)" in proc.stdout, proc.stderr
    proc = fabric(fabric_cluster, "slurm", "report", "--topology", str(fabric_topology_file), "--out",
                  str(tmp_path / "c.html"), "--state-dir", str(tmp_path / "missing"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "no agent state directory" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watch_rewrites_the_page_and_stops_cleanly(fabric_cluster, fabric_topology_file, tmp_path, sig):
    out = tmp_path / "cluster.html"
    argv = [sys.executable, "-m", "fabric_hpc.cli", "slurm", "report", "--topology", str(fabric_topology_file),
            "--out", str(out), "--watch", "1"]
    proc = subprocess.Popen(argv, env={**fabric_cluster.env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 3:  # three different pages, each complete when read (atomic rename)
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            if out.exists():
                page = out.read_text()
                assert page.rstrip().endswith("</html>")
                seen.add(page.split('"generated":"', 1)[1].split('"', 1)[0])
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_and_rest_backends_give_the_same_report(contract_cluster, restd, fabric_topology_file, tmp_path):
    """The report through slurmrestd (JWT, as a site runs it) says what the report through the CLI says."""
    from tests.slurm_integration.restd import token
    from tests.slurm_integration.test_client_contract import SCRIPT

    cluster, topo = contract_cluster, fabric_topology_file
    wd = str(cluster.work_dir)
    run = cluster.sbatch("-N1", "--gres=gpu:2", "-w", "n5", script=SCRIPT.format(s=120), cwd=wd)
    held = cluster.sbatch("-N2", "--gres=gpu:8", "-H", "--comment=fabric", script=SCRIPT.format(s=1), cwd=wd)
    try:
        cluster.wait_job(run, ("RUNNING",), timeout=30)
        out = {}
        for backend in ("cli", "rest"):
            extra = []
            if backend == "rest":
                extra = ["--backend", "rest", "--rest-url", restd.url]
            env = {**cluster.env, "PYTHONPATH": str(REPO), "SLURM_JWT": token(cluster)}
            proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "slurm", "report", "--topology",
                                   str(topo), "--out", str(tmp_path / f"{backend}.html"), "--json", *extra],
                                  env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
            data = json.loads(proc.stdout)
            for key in ("html", "html_bytes", "generated"):
                data.pop(key)
            for p in data["pending"]:
                p.pop("waiting_s")
            out[backend] = data
        assert out["cli"] == out["rest"]
        assert [(r["job"], r["hosts"], r["gpus"]) for r in out["cli"]["running"]] == [(str(run), ["n5"], 2)]
        assert [(p["job"], p["slurm_reason"]) for p in out["cli"]["pending"]] == [(str(held), "JobHeldUser")]
    finally:
        cluster.run(["scancel", str(run), str(held)], check=False)
