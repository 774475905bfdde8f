"""The rest backend's JWT from a file (agent.rest_token_file), read at every request, and the user
name sent with it (agent.rest_user): against an HTTP server on a real unix socket."""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import open_client
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.deploy_config import load_config
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.unix_http import UnixHttpServer

GOOD, OLD = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJyb290In0.good-signature-1234", "eyJ0.eyJ1.expired-signature-5678"
USER = pwd.getpwuid(os.getuid()).pw_name


class AuthServer(UnixHttpServer):
    """Answers ``GET /slurm/v0.0.44/jobs/`` with no jobs for the token :data:`GOOD`, else HTTP 511
    "Protocol authentication error" (what 25.11's slurmrestd answers an expired token)."""

    def handle(self, conn: socket.socket, request: bytes) -> None:
        headers = dict(line.split(": ", 1) for line in request.decode().split("\r\n")[1:] if ": " in line)
        token, user = headers.get("X-SLURM-USER-TOKEN"), headers.get("X-SLURM-USER-NAME")
        self.seen.append((token, user))
        if token == GOOD:
            self.reply(conn, 200, {"jobs": [], "errors": [], "warnings": []})
        else:
            self.reply(conn, 511, {"errors": [{"description": "Unable to query jobs",
                                               "error": "Protocol authentication error"}]})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthServer]:
    srv = AuthServer(tmp_path / "restd.sock")
    yield srv
    srv.close()


def _token_file(tmp_path: Path, text: str, mode: int = 0o640) -> Path:
    path = tmp_path / "slurm.jwt"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_token_file_is_read_at_every_request_so_a_renewal_needs_no_restart(server: AuthServer,
                                                                                tmp_path: Path) -> None:
    jwt = _token_file(tmp_path, f"SLURM_JWT={OLD}\n")  # as `scontrol token` prints it
    client = RestClient(f"unix:{server.path}", token_file=str(jwt), user="fabric", api="v0.0.44", env={})
    with pytest.raises(SlurmError, match="Protocol authentication error") as info:
        client.jobs()
    hint = str(info.value.hint)
    assert f"rest_token_file {jwt}" in hint and "scontrol token username=fabric" in hint
    assert "rest_user" in hint and OLD not in str(info.value) + hint
    _token_file(tmp_path, GOOD + "\n")  # the cron job renewed it
    assert client.jobs() == []
    assert server.seen == [(OLD, "fabric"), (GOOD, "fabric")]


def test_without_a_token_file_the_jwt_fix_names_the_user_setting(server: AuthServer) -> None:
    client = RestClient(f"unix:{server.path}", api="v0.0.44", env={"SLURM_JWT": OLD, "USER": "ann"})
    with pytest.raises(SlurmError) as info:
        client.jobs()
    assert "rest_user" in str(info.value.hint) and "rest_token_file" in str(info.value.hint)
    assert server.seen == [(OLD, "ann")]


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o604])
def test_a_token_file_others_may_read_or_its_group_write_is_refused(tmp_path: Path, mode: int) -> None:
    jwt = _token_file(tmp_path, GOOD, mode)
    with pytest.raises(ConfigError, match=f"rest_token_file {jwt}: owner uid .* mode {mode:o}") as info:
        RestClient(f"unix:{tmp_path}/s", token_file=str(jwt), env={})
    assert "chmod 0640" in str(info.value.hint) and GOOD not in str(info.value)


def test_a_missing_or_empty_token_file_is_a_config_error_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read") as info:
        RestClient(f"unix:{tmp_path}/s", token_file=str(tmp_path / "none.jwt"), env={})
    assert "scontrol token" in str(info.value.hint)
    with pytest.raises(ConfigError, match="holds no token"):
        RestClient(f"unix:{tmp_path}/s", token_file=str(_token_file(tmp_path, "SLURM_JWT=\n")), env={})


def test_a_failed_cycle_keeps_its_fix_in_status_json(server: AuthServer, tmp_path: Path) -> None:
    from fabric_hpc.slurm.agent import Agent, AgentConfig
    from fabric_hpc.topology import build, generators

    jwt = _token_file(tmp_path, OLD)
    client = RestClient(f"unix:{server.path}", token_file=str(jwt), user="fabric", api="v0.0.44", env={})
    state = tmp_path / "state"
    state.mkdir()
    a = Agent(client, build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8)),
              AgentConfig(state_dir=str(state)))
    a.lock.acquire()
    try:
        with pytest.raises(SlurmError) as info:
            a.cycle()
        a._error(info.value, 0.25)
    finally:
        a.lock.release()
    status = json.loads((state / "status.json").read_text())
    assert "Protocol authentication error" in status["last_error"]
    assert f"fix: renew the token in rest_token_file {jwt}" in status["last_error"]


def _config(tmp_path: Path, **agent: str) -> Path:
    lines = ["[agent]", 'topology = "superpod:sus=1"', *(f'{k} = "{v}"' for k, v in agent.items()),
             "[install]", f'service_user = "{USER}"', 'python = "/usr/bin/python3"',
             'slurm_version = "25.11"']
    path = tmp_path / "a.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_config_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rest_token_file"):
        load_config(_config(tmp_path, backend="rest", rest_url="unix:/run/s", rest_token_file="slurm.jwt"))
    with pytest.raises(ConfigError, match="rest_user"):
        load_config(_config(tmp_path, backend="rest", rest_url="unix:/run/s", rest_user="a b"))
    cfg = load_config(_config(tmp_path, backend="rest", rest_url="unix:/run/s",
                              rest_token_file="/etc/fabric-hpc/slurm.jwt", rest_user="fabric"))[0]
    assert (cfg.agent.rest_token_file, cfg.agent.rest_user) == ("/etc/fabric-hpc/slurm.jwt", "fabric")
    with pytest.raises(ConfigError, match="for backend rest"):
        open_client("cli", token_file="/etc/fabric-hpc/slurm.jwt")


def _install(cfg: Path, root: Path) -> int:
    return main(["slurm", "install", "--config", str(cfg), "--root", str(root), "--dry-run"])


def test_install_says_how_to_create_and_renew_the_token(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    cfg = _config(tmp_path, backend="rest", rest_url="unix:/run/s",
                  rest_token_file="/etc/fabric-hpc/slurm.jwt", rest_user="fabric")
    assert _install(cfg, tmp_path / "root") == 0
    out = capsys.readouterr().out
    assert "reads its JWT from /etc/fabric-hpc/slurm.jwt at every request, as user fabric" in out
    assert "scontrol token username=fabric lifespan=86400 > /etc/fabric-hpc/slurm.jwt.new" in out
    cfg = _config(tmp_path, backend="rest", rest_url="unix:/run/s")
    assert _install(cfg, tmp_path / "root") == 0
    assert "the installed agent has no JWT" in capsys.readouterr().out
