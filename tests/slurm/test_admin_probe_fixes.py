"""Defects a Slurm admin's first run found, on real files, sockets and processes (no Slurm needed here;
the live halves are in tests/slurm_integration/test_rest_token_live.py and test_admin_probe_live.py)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_answers import JWT_HINT
from fabric_hpc.slurm.rest_backend import RestClient, header_value
from tests.slurm.unix_http import UnixHttpServer

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTk5OTk5OTksInN1biI6InJvb3QifQ.Zm9vYmFyYmF6cXV4cXV1eE55Zms0"


class EchoServer(UnixHttpServer):
    """Answers every request on a unix socket with ``status`` and a text body that quotes the request
    (as an error page of a proxy in front of slurmrestd may)."""

    def __init__(self, path: Path, status: str) -> None:
        self.status = status
        super().__init__(path)

    def handle(self, conn: socket.socket, request: bytes) -> None:
        body = b"bad request: " + b" | ".join(reversed(request.split(b"\r\n")))
        self.reply(conn, self.status, body, "text/plain")


@pytest.fixture(params=["401 Unauthorized", "502 Bad Gateway"])
def echo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EchoServer]:
    srv = EchoServer(tmp_path / "restd.sock", request.param)
    yield srv
    srv.sock.close()


def _leaks(text: str) -> list[str]:
    return [part for part in (JWT, *JWT.split(".")) if len(part) >= 8 and part in text]


# -- 1: a token is stripped, checked, and never shown --------------------------------------------
@pytest.mark.parametrize("pasted", [JWT + "\n", JWT + "\r\n", "  " + JWT + "\t\n"])
def test_surrounding_whitespace_of_a_pasted_token_is_stripped(pasted: str, tmp_path: Path) -> None:
    assert header_value(pasted, "SLURM_JWT", secret=True) == JWT
    assert RestClient(f"unix:{tmp_path}/s", env={"SLURM_JWT": pasted}).token == JWT


@pytest.mark.parametrize("bad", [JWT[:20] + "\n" + JWT[20:], JWT + "\x00", JWT.replace(".", "\r.", 1),
                                 JWT + "\x7f", JWT[:10] + "é" + JWT[10:]])
def test_a_token_with_a_character_inside_http_refuses_is_refused_without_showing_it(bad: str,
                                                                                  tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^SLURM_JWT holds a (control|non-ASCII) character") as info:
        RestClient(f"unix:{tmp_path}/s", env={"SLURM_JWT": bad})
    shown = str(info.value) + repr(info.value) + repr(info.value.to_dict())
    assert not _leaks(shown) and info.value.hint and "scontrol token" in info.value.hint


def test_a_user_name_with_a_newline_is_refused_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="user name"):
        RestClient(f"unix:{tmp_path}/s", env={"SLURM_JWT": JWT, "USER": "root\nX-Evil: 1"})


def test_an_answer_quoting_the_request_never_shows_the_token(echo: EchoServer) -> None:
    client = RestClient(f"unix:{echo.path}", token=JWT, api="v0.0.44")
    with pytest.raises(SlurmError) as info:
        client.jobs()
    text = str(info.value)
    assert "without JSON" in text and "<token>" in text and not _leaks(text)
    assert (info.value.hint == JWT_HINT) == echo.status.startswith("401")


def test_a_header_value_http_refuses_is_an_error_without_its_text(echo: EchoServer) -> None:
    """Set after the checks (a caller's own code): http.client's ValueError would quote the value."""
    client = RestClient(f"unix:{echo.path}", token=JWT, api="v0.0.44")
    client.token = JWT + "\n"
    with pytest.raises(ConfigError, match="a request header holds a character HTTP does not allow") as info:
        client.jobs()
    assert not _leaks(str(info.value) + repr(info.value))


# -- 2: an authentication answer is a token problem -----------------------------------------------
@pytest.mark.parametrize("status, errors", [
    (511, [{"description": "Unable to query jobs", "error": "Protocol authentication error"}]),
    (401, []), (500, [{"error": "Authentication failure"}])])
def test_an_authentication_answer_gets_the_jwt_fix(status: int, errors: list[dict[str, str]]) -> None:
    from fabric_hpc.slurm.rest_answers import checked

    with pytest.raises(SlurmError) as info:
        checked(status, {"errors": errors, "warnings": []}, "slurmrestd GET /jobs/")
    assert info.value.hint == JWT_HINT


def test_a_refused_token_on_22_05_gets_the_jwt_fix() -> None:
    """22.05's slurmrestd answers a token slurmctld refuses with HTTP 500, errno -1, "Unspecified error"."""
    from fabric_hpc.slurm.rest_answers import checked

    for entry in ({"error": "Unspecified error", "errno": -1},
                  {"description": "Failed while looking for jobs", "error_number": -1,
                   "error": "Unspecified error"}):
        with pytest.raises(SlurmError) as info:
            checked(500, {"errors": [entry], "nodes": []}, "slurmrestd GET /nodes")
        assert info.value.hint and info.value.hint.startswith(JWT_HINT) and "22.05" in info.value.hint


def test_other_failures_keep_no_jwt_fix() -> None:
    from fabric_hpc.slurm.rest_answers import checked

    with pytest.raises(SlurmError) as info:
        checked(500, {"errors": [{"error": "Unable to contact slurm controller"}]}, "slurmrestd GET /jobs/")
    assert info.value.hint is None


# -- 3: uninstall and slurmctld's cached job_submit.lua -------------------------------------------
def _site_config(base: Path, **install: str) -> Path:
    import grp
    import json
    import os
    import pwd

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    lines = ["[agent]", 'topology = "leaf-spine:hosts=4,hosts_per_leaf=2,gpus=8,cpus=8"',
             f'state_dir = "{install.pop("state_dir", f"{base}/var/lib/fabric-agent")}"', "[install]",
             f'slurm_conf_dir = "{base}/etc/slurm"', f'config_dir = "{base}/etc/fabric-hpc"',
             f'unit_dir = "{base}/etc/systemd/system"', f'service_user = "{user}"',
             f'slurm_group = "{group}"',
             f'python = "{sys.executable}"', 'slurm_version = "22.05"', f'topo_dir = "{base}/nccl"',
             *(f"{k} = {json.dumps(v)}" for k, v in install.items())]
    path = base / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_restored_job_submit_lua_is_newer_than_fabrics(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """slurmctld reloads the plugin only for a later mtime second, even when uninstall follows at once."""
    import os

    from fabric_hpc.cli.main import main

    lua = tmp_path / "etc/slurm/job_submit.lua"
    lua.parent.mkdir(parents=True)
    lua.write_text("-- the site's plugin\n")
    os.utime(lua, (1_000_000_000, 1_000_000_000))  # written long ago
    cfg = _site_config(tmp_path)
    assert main(["slurm", "install", "--config", str(cfg), "--force"]) == 0
    fabric_mtime = lua.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["slurm", "uninstall", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert lua.read_text() == "-- the site's plugin\n"
    assert lua.stat().st_mtime_ns // 10**9 > fabric_mtime // 10**9
    assert f"slurmctld loads the restored {lua}" in out


def test_uninstall_says_a_removed_job_submit_lua_needs_a_reconfigure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    cfg = _site_config(tmp_path)
    assert main(["slurm", "install", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["slurm", "uninstall", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "etc/slurm/job_submit.lua").exists()
    assert "must not name lua in JobSubmitPlugins" in out and "`scontrol reconfigure`" in out


# -- 5: a SLURM_CONF that names no readable file is said at once, in one set of words ----------------
@pytest.mark.parametrize("command", [["slurm", "jobs"], ["slurm", "nodes"], ["slurm", "why", "1"]])
def test_the_cli_backend_refuses_a_slurm_conf_that_is_no_readable_file(command: list[str],
                                                                      tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    for conf in ("/nonexistent/slurm.conf", str(tmp_path)):  # missing; a directory
        env = {**os.environ, "PYTHONPATH": str(repo), "SLURM_CONF": conf}
        proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", *command], env=env, text=True,
                              capture_output=True, timeout=25)  # Slurm's own wait for a config is 30 s
        assert proc.returncode == 5, proc.stderr
        assert f"SLURM_CONF={conf} is not a readable file:" in proc.stderr
        assert "fix: point SLURM_CONF at the cluster's slurm.conf" in proc.stderr
        assert "did not answer" not in proc.stderr


def test_every_backend_uses_the_same_slurm_conf_words(tmp_path: Path) -> None:
    from fabric_hpc.slurm.cli_backend import CliClient
    from fabric_hpc.slurm.pyslurm_backend import load_pyslurm

    conf = str(tmp_path / "missing.conf")
    said = []
    for call in (lambda: CliClient({"SLURM_CONF": conf, "PATH": "/usr/bin:/bin"}).requeue(5),
                 lambda: RestClient(f"unix:{tmp_path}/s", env={"SLURM_CONF": conf, "PATH": "/usr/bin:/bin"},
                                    token=JWT).requeue(5),  # the rest backend's requeue runs scontrol
                 lambda: load_pyslurm(conf)):
        with pytest.raises(SlurmError) as info:
            call()
        said.append((info.value.message.partition(": ")[0], info.value.hint))
    words = (f"SLURM_CONF={conf} is not a readable file", "point SLURM_CONF at the cluster's slurm.conf")
    assert said == [words] * 3


# -- 6: a symlinked state dir; uninstall checks every path before it removes anything ------------
def _tree(base: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(base)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(base.rglob("*"))}


def test_install_refuses_a_symlinked_state_dir_before_writing_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "var/lib").mkdir(parents=True)
    (tmp_path / "var/lib/fabric-agent").symlink_to(real)
    cfg = _site_config(tmp_path)
    before = _tree(tmp_path)
    for dry in ([], ["--dry-run"]):
        code = main(["slurm", "install", "--config", str(cfg), *dry])
        err, out = capsys.readouterr()[::-1]
        said = err if not dry else out
        assert f"state dir {tmp_path}/var/lib/fabric-agent is a symlink (to {real})" in said, said
        assert code == 3  # a dry run exits as the real run would
        assert _tree(tmp_path) == before


def test_uninstall_purge_state_through_a_symlink_removes_nothing(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An install made before the check followed the symlink: --purge-state now refuses before removing
    anything (it removed every file and the manifest, then failed on rmdir of the symlink)."""
    from fabric_hpc.cli.main import main

    cfg = _site_config(tmp_path)
    assert main(["slurm", "install", "--config", str(cfg)]) == 0
    state = tmp_path / "var/lib/fabric-agent"
    (state / "decisions.jsonl").write_text("{}\n")
    state.rename(tmp_path / "elsewhere")
    state.symlink_to(tmp_path / "elsewhere")
    before = _tree(tmp_path)
    capsys.readouterr()
    assert main(["slurm", "uninstall", "--config", str(cfg), "--purge-state"]) == 3
    err = capsys.readouterr().err
    assert "nothing was removed" in err and "is a symlink" in err and "fix: " in err, err
    assert _tree(tmp_path) == before
    assert main(["slurm", "uninstall", "--config", str(cfg)]) == 0  # the rest goes; the state dir is left
    left = _tree(tmp_path)
    assert not (tmp_path / "etc/fabric-hpc/install-manifest.json").exists()
    assert "etc/slurm/job_submit.lua" not in left
    assert "elsewhere/decisions.jsonl" in left and state.is_symlink()


def test_uninstall_checks_every_listed_path_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    cfg = _site_config(tmp_path)
    assert main(["slurm", "install", "--config", str(cfg)]) == 0
    unit = tmp_path / "etc/systemd/system/fabric-agent.service"
    unit.unlink()
    unit.mkdir()  # the last file uninstall would reach (sorted paths)
    before = _tree(tmp_path)
    capsys.readouterr()
    assert main(["slurm", "uninstall", "--config", str(cfg), "--force"]) == 3
    err = capsys.readouterr().err
    assert "fabric-agent.service: a directory now" in err and "nothing was removed" in err
    assert _tree(tmp_path) == before


# -- 7: the prologs' settings file is read through the input boundary ------------------------------------
@pytest.mark.parametrize("plugin, kind", [*(("task_prolog.py", k) for k in ("fifo", "/dev/zero", "big",
                                                                           "dup")), ("prolog.py", "fifo")])
def test_the_prologs_refuse_a_config_that_is_no_small_regular_json_file(plugin: str, kind: str,
                                                                         tmp_path: Path) -> None:
    """The plugins, run as Slurm runs them: a FIFO hung the TaskProlog until killed, /dev/zero was read."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "prolog.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "big":
        path.write_text('{"topology": "' + "x" * (2 << 20) + '"}')
    elif kind == "dup":
        path.write_text('{"topology": "/a", "topology": "/b", "topo_dir": "/t", "ckpt_root": "/c"}')
    config = "/dev/zero" if kind == "/dev/zero" else str(path)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(repo), "FABRIC_PROLOG_CONFIG": config,
           "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1", "SLURM_JOB_USER": "root", "SLURM_JOB_UID": "0"}
    script = repo / "plugins" / plugin
    if plugin == "task_prolog.py":  # it reads only its CONFIG line (a job's environment is the user's)
        from fabric_hpc.slurm.plugins import render_script

        script = tmp_path / plugin
        script.write_text(render_script(plugin, config=config, python=sys.executable))
    proc = subprocess.run([sys.executable, str(script)], env=env, text=True, capture_output=True, timeout=60)
    said = proc.stdout + proc.stderr
    expected = {"fifo": "is a FIFO, not a regular file", "big": "more than the limit of 1,048,576",
                "/dev/zero": "is a character device, not a regular file",
                "dup": "key 'topology' appears twice"}[kind]
    assert proc.returncode == 0 and expected in said, said
    assert "export " not in proc.stdout


# -- 8: CLI gaps: --rest-url without the rest backend, fix lines of topo-files -------------------
@pytest.mark.parametrize("backend", ["cli", "pyslurm"])
def test_rest_url_without_the_rest_backend_is_refused(backend: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from fabric_hpc.cli.main import main

    assert main(["slurm", "jobs", "--backend", backend, "--rest-url", "unix:/run/slurmrestd.sock"]) == 3
    err = capsys.readouterr().err
    assert f"--rest-url is for --backend rest, not --backend {backend}" in err
    assert "fix: add --backend rest" in err


def _topo_files(directory: Path, *extra: str) -> tuple[int, str]:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "fabric_hpc.cli", "slurm", "topo-files", "--topology",
            "leaf-spine:hosts=2,hosts_per_leaf=2,gpus=8,cpus=8", "--dir", str(directory), *extra]
    proc = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)}, text=True,
                          capture_output=True, timeout=120)
    return proc.returncode, proc.stderr


def test_topo_files_refusals_carry_a_fix(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    (tmp_path / "link").symlink_to(real)
    code, err = _topo_files(tmp_path / "link")
    assert code == 3 and "is not a directory (a symlink" in err and "fix: give the real directory" in err, err
    real.chmod(0o777)
    code, err = _topo_files(real)
    assert code == 3 and "only root or the job's user may write it" in err, err
    assert f"fix: chown root {real}" in err
    real.chmod(0o755)
    code, err = _topo_files(real, "--host", "nosuch")
    assert code == 3 and "are not in the fabric model" in err
    assert "fix: --host takes the model's host names" in err
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by all, not sticky
    code, err = _topo_files(shared / "nccl")
    assert code == 3 and "is writable by other users" in err and f"fix: chmod go-w {shared}" in err, err
