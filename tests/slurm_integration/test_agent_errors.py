"""The agent never dies on an unexpected answer: malformed answers of each Slurm version, then recovery.

The answers are fed through :class:`~fabric_hpc.slurm.replay.ReplayClient`, so they go through the
same JSON decoders as the ``cli`` and ``rest`` backends, and through the pyslurm backend's object
readers. Each is a minimal record in the shape of one Slurm release (22.05: ``sinfo --json`` nodes,
string states; 25.11: ``scontrol show nodes --json``, list states and ``{"set", "number"}`` numbers),
mangled one way: truncated, wrong types, unknown states, unreadable GRES, nesting deep enough for a
RecursionError. :class:`Scripted` serves one mangled answer per cycle, then a raw ``TypeError`` (what
a decoder bug throws), then a good cluster, so the test sees each failure logged and the agent place
the pending gang afterwards. No Slurm is needed: this is the loop's logic, not Slurm's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fabric_hpc.slurm.agent import Agent, AgentConfig, bounded
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError
from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm, node_from_pyslurm
from fabric_hpc.slurm.replay import ReplayClient
from fabric_hpc.topology import build, generators

REPO = Path(__file__).resolve().parents[2]
NUM = {"set": True, "infinite": False, "number": 2}
NODE = {"22.05": {"name": "n1", "state": "idle", "state_flags": [], "cpus": 8, "gres": "gpu:h100:8",
                  "gres_used": "gpu:h100:0(IDX:N/A)", "partitions": ["debug"]},
        "25.11": {"name": "n1", "state": ["IDLE"], "cpus": 8, "gres": "gpu:h100:8",
                  "gres_used": "gpu:h100:0(IDX:N/A)", "partitions": ["debug"]}}
JOB = {"22.05": {"job_id": 7, "job_state": "PENDING", "node_count": 2, "tres_per_node": "gres:gpu:3",
                 "comment": "fabric", "submit_time": 1},
       "25.11": {"job_id": 7, "job_state": ["PENDING"], "node_count": NUM, "tres_per_node": "gres/gpu:3",
                 "comment": "fabric", "submit_time": {"set": True, "infinite": False, "number": 1}}}


def _mangles(version: str) -> list[tuple[str, str]]:
    """(nodes answer, jobs answer) texts of one version, each broken one way."""
    node, job = NODE[version], JOB[version]

    def answer(nodes: Any = None, jobs: Any = None) -> tuple[str, str]:
        return (json.dumps({"nodes": [node] if nodes is None else nodes}),
                json.dumps({"jobs": [job] if jobs is None else jobs}))

    good_nodes, good_jobs = answer()
    return [
        (good_nodes[: len(good_nodes) // 2], good_jobs),                  # truncated
        answer(nodes={"n1": node}),                                      # object where a list belongs
        answer(nodes=[{**node, "name": 42}]),                            # wrong type
        answer(nodes=[{**node, "gres": "gpu:h100:eight"}]),              # unreadable GRES
        answer(jobs=[{**job, "job_state": ["EXPLODED"] if version == "25.11" else "EXPLODED"}]),
        answer(jobs=[{**job, "node_count": {"set": True, "number": "two"}}]),
        answer(jobs=["job 7"]),                                          # a record that is no object
        answer(jobs=[{k: v for k, v in job.items() if k != "job_id"}]),  # a field missing
        ("[" * 100_000, good_jobs),                                      # RecursionError in json
    ]


def _pyslurm_mangles() -> list[Callable[[], Any]]:
    """pyslurm objects with fields of the wrong type or content, read by the pyslurm backend."""
    node = dict(name="n1", state="IDLE", configured_gres={"gpu:h100": 8}, total_cpus=8, partitions=["debug"],
                active_features=[])
    job = dict(id=7, state="PENDING", allocated_nodes=None, gres_per_node={"gres/gpu": 3}, eligible_time=None,
               start_time=None, time_limit=None, name=None, state_reason="None", comment="fabric", user_name="u",
               partition="debug", num_nodes=2, required_nodes=None, submit_time=1, priority=1,
               reservation=None)
    return [lambda: node_from_pyslurm(SimpleNamespace(**{**node, "total_cpus": "8"})),
            lambda: node_from_pyslurm(SimpleNamespace(**{**node, "configured_gres": {"gpu:h100": "8"}})),
            lambda: job_from_pyslurm(SimpleNamespace(**{**job, "state": "EXPLODED"})),
            lambda: job_from_pyslurm(SimpleNamespace(**{**job, "num_nodes": None, "gres_per_node": ["gpu"]}))]


class Good(SlurmClient):
    """A healthy 16-host cluster with one pending 2-node fabric gang."""

    backend = "good"

    def nodes(self) -> list[Node]:
        return [Node(name=f"n{i}", state="idle", cpus=8, gpus=8, gpu_type="h100") for i in range(1, 17)]

    def jobs(self) -> list[Job]:
        return [Job(job_id=7, name="gang", state="PENDING", comment="fabric", nodes=2, gpus_per_node=3,
                    submit_time=1.0)]

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        raise NotImplementedError

    update = hold = release = requeue = cancel = submit  # type: ignore[assignment]


class Scripted(SlurmClient):
    """Reads from ``answers`` in turn (one per cycle, then the last forever); actions are recorded."""

    backend = "scripted"

    def __init__(self, answers: list[SlurmClient | Callable[[], Any]]) -> None:
        self.answers, self.current, self.reads = answers, answers[0], 0
        self.actions: list[tuple[str, int, dict[str, str]]] = []

    def nodes(self) -> list[Node]:
        self.current = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        if not isinstance(self.current, SlurmClient):
            self.current()  # a reader that raises
            raise AssertionError("the mangled pyslurm object was read without an error")
        return self.current.nodes()

    def jobs(self) -> list[Job]:
        assert isinstance(self.current, SlurmClient)
        return self.current.jobs()

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        raise NotImplementedError

    def update(self, job_id: int, **fields: str) -> None:
        self.actions.append(("update", job_id, fields))

    hold = release = requeue = cancel = submit  # type: ignore[assignment]


def _decoder_bug() -> None:
    raise TypeError("'NoneType' object is not subscriptable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_malformed_answers_of_each_version_are_logged_and_the_agent_carries_on(tmp_path: Path) -> None:
    broken: list[SlurmClient | Callable[[], Any]] = [ReplayClient(n, j) for v in NODE for n, j in _mangles(v)]
    broken += [*_pyslurm_mangles(), _decoder_bug]
    client = Scripted([Good(), *broken, Good()])
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    port = _free_port()
    agent = Agent(client, fab, AgentConfig(state_dir=str(tmp_path), interval_s=0.1, max_backoff_s=1.0,
                                           metrics_port=port))
    scraped: list[str] = []
    real_cycle = agent.cycle

    def cycle() -> Any:  # scrape the metrics just before the recovered cycle (the server closes at stop)
        if client.reads == len(broken) + 1:
            scraped.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
        return real_cycle()

    agent.cycle = cycle  # type: ignore[method-assign]
    runner = threading.Thread(target=agent.run, kwargs={"max_cycles": 1}, daemon=True)
    runner.start()
    runner.join(120)
    assert not runner.is_alive(), "the agent stopped cycling"
    events = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    errors = [e for e in events if e["event"] == "agent.error"]
    assert len(errors) == len(broken) == agent.errors
    assert all(e["error"] and len(e["error"]) <= 500 and e["retry_in_s"] <= 1.0 for e in errors)
    pyslurm_errors = errors[-1 - len(_pyslurm_mangles()):-1]
    assert [e["kind"] for e in pyslurm_errors] == ["SlurmError"] * len(pyslurm_errors)
    assert all(re.search(r"field '(total_cpus|configured_gres|state|num_nodes|gres_per_node)'", e["error"])
               for e in pyslurm_errors)  # the error names the field
    assert errors[-1]["kind"] == "TypeError" and re.search(r"test_agent_errors\.py:\d+$", errors[-1]["where"])
    assert any("recursion" in e["error"].lower() or "not JSON" in e["error"] for e in errors)
    assert [e["event"] for e in events].count("agent.place") == 1  # placed once Slurm answered sensibly again
    assert client.actions[0][2]["ReqNodeList"] and client.actions[0][1] == 7
    assert f"fabric_agent_errors_total {float(len(broken))}" in scraped[0]
    assert json.loads((tmp_path / "status.json").read_text())["errors"] == len(broken)


def test_bounded_keeps_long_answers_short() -> None:
    text = bounded("x" * 10_000)
    assert len(text) <= 500 and text.endswith("... (+9530 chars)") and bounded("short") == "short"


def test_first_contact_failure_is_fatal_and_names_the_backend(tmp_path: Path) -> None:
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    agent = Agent(Scripted([_decoder_bug]), fab, AgentConfig(state_dir=str(tmp_path)))
    with pytest.raises(SlurmError, match=r"first contact with Slurm failed \(the scripted backend\): TypeError"):
        agent.run()
    assert agent.lock.holder() is None  # the lock is released


def _agent_cli(tmp_path: Path, sock: Path, *extra: str) -> subprocess.Popen[str]:
    from fabric_hpc.topology import save_spec

    save_spec(build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8)).spec, tmp_path / "topo.yaml")
    argv = [sys.executable, "-c", "import sys; from fabric_hpc.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "agent", "run", "--topology", str(tmp_path / "topo.yaml"),
            "--state-dir", str(tmp_path / "state"), "--backend", "rest", "--rest-url", f"unix:{sock}", *extra]
    return subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture()
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never answers: a Slurm API that hangs."""
    path = Path(tempfile.mkdtemp(prefix="fabric-hang-")) / "slurmrestd.sock"  # short: AF_UNIX path limit
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    try:
        yield path
    finally:
        server.close()
        shutil.rmtree(path.parent, ignore_errors=True)


def test_agent_run_fails_fast_with_exit_5_when_slurm_does_not_answer(tmp_path: Path, silent_socket: Path) -> None:
    proc = _agent_cli(tmp_path, silent_socket, "--contact-timeout", "1")
    out, err = proc.communicate(timeout=60)  # without the bounded first contact it would retry forever
    assert proc.returncode == 5, err
    lines = err.strip().splitlines()
    want = f"error: slurmrestd at unix:{silent_socket} did not answer within 1 s (the rest backend)"
    assert lines[0] == want, err  # slurmrestd is the one waited for (it may wait for slurmctld)
    assert "Traceback" not in err
    assert lines[1].startswith("  fix:") and len(lines) == 2


def test_sigterm_stops_an_agent_waiting_for_slurm(tmp_path: Path, silent_socket: Path) -> None:
    proc = _agent_cli(tmp_path, silent_socket, "--contact-timeout", "300")
    deadline = time.monotonic() + 30
    while not (tmp_path / "state" / "agent.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the agent holds its lock: it is in its first contact
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)  # long before the 300 s contact timeout
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in (tmp_path / "state" / "decisions.jsonl").read_text().splitlines()]
    assert events == ["agent.stop"]
