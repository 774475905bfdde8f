"""The rest backend against a real slurmrestd with JWT (admin probe 7): an agent whose token is renewed
in its ``--rest-token-file`` (agent.rest_token_file) goes on without a restart, and says how to renew
it while the token is refused (both tiers); a client whose slurmrestd restarts offering another API
version (``-d data_parser/v0.0.42`` after v0.0.44) asks the spec again and goes on (25.11).
Unit: tests/slurm/test_rest_token_file.py, tests/slurm/test_rest_renegotiate.py."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm_integration.conftest import AgentProcess
from tests.slurm_integration.restd import Restd, jwt_cluster, running_restd, token

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def jwt_live(slurm_cluster_factory: Any, slurm_fabric: Any) -> Iterator[Any]:
    with jwt_cluster(slurm_cluster_factory, slurm_fabric, "fabric-renew-") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def restd(jwt_live: Any) -> Iterator[Restd]:
    with running_restd(jwt_live) as server:
        yield server


def _write_token(path: Path, text: str) -> None:
    """As the documented renewal does: a new file, 0600, renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    new.chmod(0o600)
    os.replace(new, path)


def _status(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _wait(what: str, done: Any, agent: AgentProcess, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(status := _status(agent.state_dir)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s: {status}\n{agent.log()}")
        time.sleep(0.2)
    return status


def test_a_renewed_token_file_needs_no_agent_restart(jwt_live: Any, restd: Restd, tmp_path: Path,
                                                     fabric_topology_file: Path) -> None:
    jwt_file, state = tmp_path / "slurm.jwt", tmp_path / "state"
    state.mkdir()
    _write_token(jwt_file, f"SLURM_JWT={token(jwt_live)}\n")  # scontrol token's own line
    agent = AgentProcess(jwt_live, fabric_topology_file, state, "--backend", "rest", "--rest-url", restd.url,
                         "--rest-token-file", str(jwt_file), "--rest-user", "root")
    try:
        agent.start()
        bad = token(jwt_live)[:-6] + "AAAAAA"  # slurmrestd refuses it, as an expired one
        _write_token(jwt_file, bad + "\n")
        status = _wait("no failed cycle naming the token file", lambda s: s.get("errors", 0) > 0, agent)
        assert f"fix: renew the token in rest_token_file {jwt_file} for user root" in status["last_error"]
        assert "scontrol token username=root" in status["last_error"]
        _write_token(jwt_file, token(jwt_live) + "\n")  # the cron job ran
        failed_at = status["cycles"]
        _wait("no good cycle after the renewal", lambda s: s.get("cycles", 0) >= failed_at + 2, agent)
        assert agent.proc is not None and agent.proc.poll() is None  # the same process throughout
        logs = agent.log() + (state / "decisions.jsonl").read_text()
        assert bad not in logs and bad.split(".")[-1] not in logs
        events = [json.loads(line) for line in (state / "decisions.jsonl").read_text().splitlines()]
        assert any(e["event"] == "agent.error" and e.get("hint", "").startswith(
            f"renew the token in rest_token_file {jwt_file}") for e in events)
    finally:
        agent.stop()


@pytest.mark.slurm_min(25, 11)
def test_a_restarted_slurmrestd_offering_another_version_is_followed(jwt_live: Any, restd: Restd) -> None:
    client = RestClient(restd.url, token=token(jwt_live), env=jwt_live.env)
    assert {n.name for n in client.nodes()} and client.version == "v0.0.44"
    restd.stop()
    restd.start(args=("-d", "data_parser/v0.0.42"))
    try:
        assert {n.name for n in client.nodes()} == {n.name for n in client.nodes()}
        assert client.version == "v0.0.42"
        client.jobs()
    finally:
        restd.stop()
        restd.start()
