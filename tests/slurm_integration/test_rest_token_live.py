"""The JWT of the rest backend, as an admin pastes it, against a real slurmrestd (both tiers).

A token with a trailing newline (what ``scontrol token`` output carries) works; a control character
inside it is refused with words that never show the token; a token slurmrestd does not accept
(HTTP 401 or 511, "Protocol authentication error") gets the JWT fix, from ``fabric slurm`` and from
``fabric agent run`` alike. No output ever contains the token or its signature.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm_integration.restd import Restd, jwt_cluster, running_restd, token

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def jwt_live(slurm_cluster_factory: Any, slurm_fabric: Any) -> Iterator[Any]:
    with jwt_cluster(slurm_cluster_factory, slurm_fabric, "fabric-jwt-") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def restd(jwt_live: Any) -> Iterator[Restd]:
    with running_restd(jwt_live) as server:
        yield server


def _fabric(cluster: Any, jwt: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env, "PYTHONPATH": str(REPO), "SLURM_JWT": jwt}
    return subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, cwd=str(cluster.work_dir))


def _leaks(jwt: str, text: str) -> list[str]:
    """The parts of ``jwt`` (whole, each dot-separated part of 8+ chars) that ``text`` shows."""
    return [part for part in (jwt, *jwt.split(".")) if len(part) >= 8 and part in text]


@pytest.mark.parametrize("tail", ["\n", "\r\n", " \t\n"])
def test_a_token_with_surrounding_whitespace_works(tail: str, jwt_live: Any, restd: Restd) -> None:
    jwt = token(jwt_live)
    proc = _fabric(jwt_live, "\n" + jwt + tail, "slurm", "nodes", "--backend", "rest", "--rest-url",
                   restd.url, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and '"n1"' in proc.stdout
    assert RestClient(restd.url, token=jwt + tail, env=jwt_live.env).token == jwt


@pytest.mark.parametrize("command", [["slurm", "nodes"], ["slurm", "jobs"]])
def test_a_control_character_inside_the_token_is_refused_without_showing_it(
        command: list[str], jwt_live: Any, restd: Restd) -> None:
    jwt = token(jwt_live)
    bad = jwt[:20] + "\n" + jwt[20:] + "\n"
    proc = _fabric(jwt_live, bad, *command, "--backend", "rest", "--rest-url", restd.url)
    assert proc.returncode == 3, proc.stderr
    assert "SLURM_JWT holds a control character" in proc.stderr and "fix: " in proc.stderr
    assert "Traceback" not in proc.stderr and not _leaks(jwt, proc.stdout + proc.stderr)
    with pytest.raises(ConfigError, match="holds a control character") as info:
        RestClient(restd.url, token=jwt.replace(".", ".\x1b", 1), env=jwt_live.env)
    assert not _leaks(jwt, str(info.value) + repr(info.value))


def test_agent_run_with_a_control_character_in_the_token_never_prints_it(
        jwt_live: Any, restd: Restd, tmp_path: Path, fabric_topology_file: Path) -> None:
    jwt = token(jwt_live)
    proc = _fabric(jwt_live, jwt[:30] + "\r" + jwt[30:], "agent", "run", "--backend", "rest", "--rest-url",
                   restd.url, "--topology", str(fabric_topology_file), "--state-dir", str(tmp_path),
                   "--cycles", "1")
    assert proc.returncode == 3, proc.stderr
    assert "SLURM_JWT holds a control character" in proc.stderr
    assert not _leaks(jwt, proc.stdout + proc.stderr + _files_text(tmp_path))


def _files_text(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize("command", [["slurm", "jobs"], ["slurm", "nodes"]])
def test_a_token_slurmrestd_refuses_gets_the_jwt_fix(command: list[str], jwt_live: Any, restd: Restd) -> None:
    for bad in ("garbage", token(jwt_live)[:-6] + "AAAAAA"):  # not a JWT; a JWT whose signature is wrong
        proc = _fabric(jwt_live, bad, *command, "--backend", "rest", "--rest-url", restd.url)
        assert proc.returncode == 5, proc.stderr
        assert "fix: a JWT is missing, expired or not this cluster's" in proc.stderr, proc.stderr
        assert "scontrol ping" not in proc.stderr and not _leaks(bad, proc.stdout + proc.stderr)
    rest = RestClient(restd.url, token="garbage", env=jwt_live.env)
    with pytest.raises(SlurmError) as info:
        rest.jobs()
    assert info.value.hint and "scontrol token" in info.value.hint


def test_agent_first_contact_with_a_refused_token_gets_the_jwt_fix(
        jwt_live: Any, restd: Restd, tmp_path: Path, fabric_topology_file: Path) -> None:
    bad = token(jwt_live)[:-6] + "AAAAAA"
    proc = _fabric(jwt_live, bad, "agent", "run", "--backend", "rest", "--rest-url", restd.url, "--topology",
                   str(fabric_topology_file), "--state-dir", str(tmp_path), "--cycles", "1")
    assert proc.returncode == 5, proc.stderr
    assert "first contact with Slurm failed" in proc.stderr
    assert "fix: a JWT is missing, expired or not this cluster's" in proc.stderr, proc.stderr
    assert "scontrol ping" not in proc.stderr
    assert not _leaks(bad, proc.stdout + proc.stderr + _files_text(tmp_path))

