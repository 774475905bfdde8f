"""Fixes from the docs-vs-code audit: deferral renewal job by job, pyslurm CPU counts, the TaskProlog's
settings file, https refused at the check, a bounded wake file, fabric-only agent options with
``--policy slurm``. Each test failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm.actions import RENEW_BATCH, Actions, AgentPrivilegeError
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError

REPO = Path(__file__).resolve().parents[2]


class Deferrals(SlurmClient):
    """A scripted Slurm that records deferrals; ``refuse``: job -> SlurmError text, ``gone``: ended jobs."""

    backend = "scripted"

    def __init__(self, refuse: dict[int, str] | None = None, gone: Sequence[int] = ()) -> None:
        self.refuse, self.gone = refuse or {}, set(gone)
        self.batches: list[list[int]] = []
        self.renewed: list[int] = []

    def nodes(self) -> list[Node]:
        return []

    def jobs(self) -> list[Job]:
        return []

    def job(self, job_id: int) -> Job:  # still pending, unless gone (a refused job's is not a moot refusal)
        if job_id in self.gone:
            raise NotFoundError(f"Slurm knows no job {job_id}")
        return Job(job_id=job_id, name="j", state="PENDING")

    def update(self, job_id: int, **fields: str) -> None:
        if job_id in self.gone:
            raise NotFoundError(f"Slurm knows no job {job_id}")
        if job_id in self.refuse:
            raise SlurmError(self.refuse[job_id])
        self.renewed.append(job_id)

    def defer_many(self, job_ids: Sequence[int], seconds: int) -> None:
        """Like ``scontrol update JobId=a,b,c``: fails as a whole when one job is refused or gone."""
        self.batches.append(list(job_ids))
        bad = [j for j in job_ids if j in self.refuse or j in self.gone]
        if bad:
            raise SlurmError(f"scontrol update failed for job {bad[0]}")
        self.renewed.extend(job_ids)

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        raise NotImplementedError

    hold = release = requeue = cancel = submit  # type: ignore[assignment]


def test_one_refused_or_ended_job_does_not_stop_the_renewal_of_the_others() -> None:
    notes: list[tuple[str, dict]] = []
    client = Deferrals(refuse={2: "Job is no longer pending execution"}, gone=[3])
    actions = Actions(client, lambda what, **kw: notes.append((what, kw)))
    actions.apply([], [], {}, [1, 2, 3, 4], 60)
    assert sorted(set(client.renewed)) == [1, 4]
    assert notes == [("failed", {"action": "defer", "job": 2, "error": "Job is no longer pending execution"})]
    assert actions.failed_total == 1


def test_renewals_go_in_batches_while_slurm_accepts_them() -> None:
    client = Deferrals()
    Actions(client, lambda what, **kw: None).apply([], [], {}, list(range(1, 451)), 60)
    assert [len(b) for b in client.batches] == [RENEW_BATCH, RENEW_BATCH, 50]
    assert client.renewed == list(range(1, 451))


def test_a_renewal_slurm_refuses_the_agent_itself_is_still_fatal() -> None:
    client = Deferrals(refuse={2: "Access/permission denied"})
    with pytest.raises(AgentPrivilegeError, match="defer of job 2"):
        Actions(client, lambda what, **kw: None).apply([], [], {}, [1, 2, 3], 60)


def test_pyslurm_readers_fill_the_cpu_counts() -> None:
    from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm, node_from_pyslurm

    node = node_from_pyslurm(SimpleNamespace(name="n1", state="MIXED", configured_gres={"gpu:h100": 8},
                                             total_cpus=8, allocated_cpus=6, partitions=["debug"],
                                             active_features=[]))
    assert (node.cpus, node.cpus_alloc) == (8, 6)
    job = job_from_pyslurm(SimpleNamespace(
        id=7, state="PENDING", allocated_nodes=None, gres_per_node={"gpu": 8}, eligible_time=None,
        start_time=None, time_limit=None, name="g", state_reason="None", comment="fabric", user_name="u",
        partition="debug", account="a", qos="normal", num_nodes=2, required_nodes=None, excluded_nodes=None, submit_time=1,
        priority=1, dependencies=None, cpus=10, array_id=None, heterogeneous_id=None, reservation=None))
    assert job.cpus == 10


def test_the_task_prolog_reads_no_settings_file_from_the_jobs_environment(tmp_path: Path) -> None:
    """A user's FABRIC_PROLOG_CONFIG is ignored: the TaskProlog reads the file its CONFIG line names."""
    from fabric_hpc.slurm.plugins import render_script

    own = tmp_path / "user.json"
    own.write_text(json.dumps({"topology": "/x", "topo_dir": "/x", "ckpt_root": "/x", "topology": "/y"}))
    script = tmp_path / "task_prolog.py"
    script.write_text(render_script("task_prolog.py", config=str(tmp_path / "site.json"),
                                    python=sys.executable))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "FABRIC_PROLOG_CONFIG": str(own),
           "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1", "FABRIC_TASK_PROLOG": "full"}
    out = subprocess.run([sys.executable, str(script)], env=env, text=True, capture_output=True,
                         timeout=120, check=True).stdout
    assert "site.json" in out and "user.json" not in out and "export " not in out, out


@pytest.mark.parametrize("argv", [["slurm", "jobs", "--backend", "rest"],
                                  ["agent", "run", "--topology", "x.yaml", "--backend", "rest"]])
def test_https_is_refused_at_the_check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main
    from fabric_hpc.slurm.client import check_rest_url

    assert main([*argv, "--rest-url", "https://slurm.example:6820"]) == 3
    err = capsys.readouterr().err
    assert "https is not supported by the rest backend" in err and "unix:/run/slurmrestd.sock" in err
    check_rest_url("http://127.0.0.1:6820")  # plain http and unix: still pass
    check_rest_url("unix:/run/slurmrestd.sock")
    with pytest.raises(ConfigError, match="not an http URL"):
        check_rest_url("ftp://h")


def test_the_wake_file_stays_one_line_and_still_wakes_the_agent(tmp_path: Path) -> None:
    from fabric_hpc.slurm.agent import Agent, AgentConfig, heartbeat_text
    from fabric_hpc.topology import build, generators
    from tests.slurm.test_job_submit_lua import gang, run_cases

    from fabric_hpc.slurm.plugins import plugin_dir

    state = tmp_path / "agent"
    state.mkdir()
    plugin_dir(state).mkdir()  # the plugin's files live there (root's, made by install)
    (plugin_dir(state) / "heartbeat").write_text(heartbeat_text(time.time()))
    wake = plugin_dir(state) / "wake"
    rows = run_cases(tmp_path, [gang(), gang(), gang()], state_dir=str(state))
    assert [rc for rc, _, _ in rows] == ["0", "0", "0"]
    assert len(wake.read_text().splitlines()) == 1
    agent = Agent(Deferrals(), build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8)),
                  AgentConfig(state_dir=str(state)))
    agent._wake_mtime = wake.stat().st_mtime
    sleeper = threading.Thread(target=agent._sleep, args=(600,))
    sleeper.start()
    time.sleep(0.05)
    run_cases(tmp_path, [gang()], state_dir=str(state))  # rewrites the one line: a new mtime
    sleeper.join(timeout=60)
    woke = not sleeper.is_alive()
    agent._stop.set()
    sleeper.join()
    assert woke and len(wake.read_text().splitlines()) == 1


@pytest.mark.parametrize("flag, given", [("--placement", ["--placement", "cpsat"]),
                                         ("--compact-wait", ["--compact-wait", "30"]),
                                         ("--preemption/--no-preemption", ["--no-preemption"]),
                                         ("--preemption/--no-preemption", ["--preemption"]),
                                         ("--preempt-benefit-ratio", ["--preempt-benefit-ratio", "5"])])
def test_fabric_only_agent_options_are_refused_with_policy_slurm(flag: str, given: list[str], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    argv = ["agent", "run", "--topology", "x.yaml", "--state-dir", str(tmp_path / "s"), "--policy", "slurm"]
    assert main([*argv, *given]) == 3
    assert f"{flag} (agent." in capsys.readouterr().err
    config = tmp_path / "agent.toml"
    key = {"--placement": "placement = \"greedy\"", "--compact-wait": "compact_wait_s = 30",
           "--preemption/--no-preemption": "preemption = false",
           "--preempt-benefit-ratio": "preempt_benefit_ratio = 5"}[flag]
    config.write_text(f"[agent]\ntopology = \"/x.yaml\"\npolicy = \"slurm\"\n{key}\n")
    assert main(["agent", "run", "--config", str(config)]) == 3
    assert "applies to --policy fabric only" in capsys.readouterr().err


def test_policy_slurm_alone_passes_the_fabric_only_check() -> None:
    from fabric_hpc.cli.agent import _refuse_fabric_only

    _refuse_fabric_only("slurm", {"policy", "topology", "state_dir"})
    _refuse_fabric_only("fabric", {"placement", "preemption"})


def _parted_nodes(parts: dict[str, tuple[str, ...]]) -> list[Node]:
    return [Node(name=f"n{i}", state="idle", cpus=8, gpus=8, partitions=parts.get(f"n{i}", ("gpu",)))
            for i in range(1, 17)]


def test_a_job_is_placed_only_on_hosts_of_its_partitions() -> None:
    from fabric_hpc.hostlist import expand
    from fabric_hpc.slurm.view import build_view
    from fabric_hpc.topology import build, generators

    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    nodes = _parted_nodes({f"n{i}": ("debug",) for i in range(1, 13)})  # n13-n16 alone in "gpu"
    job = Job(job_id=1, name="g", state="PENDING", comment="fabric", nodes=2, gpus_per_node=8,
              partition="gpu", submit_time=1.0)
    view = build_view(fab, nodes, [job], now=100.0)
    assert set(expand(view.pending[0].job.request.exclude)) == {f"n{i}" for i in range(1, 13)}
    both = build_view(fab, nodes, [replace(job, partition="debug,gpu")], now=100.0)
    assert not both.pending[0].job.request.exclude
    bare = [Node(name=n.name, state="idle", cpus=8, gpus=8) for n in nodes]
    unreported = build_view(fab, bare, [job], now=100.0)
    assert not unreported.pending[0].job.request.exclude  # no node partitions from Slurm: no filter
    nowhere = build_view(fab, nodes, [replace(job, partition="cpu")], now=100.0)
    assert not nowhere.pending
    assert "partition 'cpu', which has no host of the fabric model" in nowhere.invalid[1]
