"""What an SRE probe found about the agent's observability: a torn audit log glued to the next record,
a start-up failure that left no reason, a metrics port checked only after Slurm answered (and not by
``fabric agent check``), a password in --rest-url echoed in errors, and events no document lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm import audit
from fabric_hpc.slurm.contract import SlurmError
from tests.slurm.test_agent_actions import Fake, agent, gang


def test_a_torn_audit_log_is_cut_before_the_agent_appends(tmp_path: Path) -> None:
    (tmp_path / audit.AUDIT_LOG).write_text('{"ts":1,"event":"agent.stop"}\n{"ts":1,"event":"agent.pl')
    (tmp_path / audit.CYCLES_LOG).write_text('{"input":{}}\n{"inp')
    a = agent(tmp_path, Fake([gang(1)]), interval_s=0.1, record_cycles=True)
    a.run(max_cycles=1)
    records = read_json_lines(tmp_path / audit.AUDIT_LOG)  # raises on a line damaged in the middle
    tail = audit.read_tail(tmp_path)
    assert tail.damaged == 0 and [e["event"] for e in records][:2] == ["agent.stop", "agent.torn_tail_cut"]
    cuts = {Path(e["file"]).name: e["bytes"] for e in records if e["event"] == "agent.torn_tail_cut"}
    assert cuts == {audit.AUDIT_LOG: len('{"ts":1,"event":"agent.pl'), audit.CYCLES_LOG: len('{"inp')}
    assert len(read_json_lines(tmp_path / audit.CYCLES_LOG)) == 2  # the old record and this cycle's


class Unreachable(Fake):
    def nodes(self):
        raise SlurmError("slurmctld is down", hint="scontrol ping")


def test_a_fatal_start_up_error_is_the_stop_reason(tmp_path: Path) -> None:
    a = agent(tmp_path, Unreachable([]), contact_timeout_s=5)
    with pytest.raises(SlurmError):
        a.run(max_cycles=1)
    stop = read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]
    assert stop["event"] == "agent.stop" and stop["reason"] == "error" and stop["exit_code"] == 5
    assert "slurmctld is down" in stop["error"] and stop["kind"] == "SlurmError"


def test_a_clean_stop_says_why(tmp_path: Path) -> None:
    a = agent(tmp_path, Fake([]), interval_s=0.1)
    a.run(max_cycles=2)
    assert read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]["reason"] == "cycles"
    b = agent(tmp_path, Fake([]), interval_s=0.1)
    b.stop()
    b.run()
    assert read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]["reason"] == "signal"


@pytest.fixture()
def taken_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_the_metrics_port_is_bound_before_slurm_is_asked(tmp_path: Path, taken_port: int) -> None:
    a = agent(tmp_path, Unreachable([]), contact_timeout_s=5, metrics_port=taken_port)
    with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{taken_port}") as err:
        a.run(max_cycles=1)  # Slurm is down too: the port is what the admin must see
    assert "ss -ltnp" in err.value.hint
    stop = read_json_lines(tmp_path / audit.AUDIT_LOG)[-1]
    assert stop["reason"] == "error" and stop["exit_code"] == 3 and str(taken_port) in stop["error"]


def test_agent_check_fails_on_a_taken_metrics_port(tmp_path: Path, taken_port: int, capsys) -> None:
    from fabric_hpc.cli.main import main
    from tests.deploy.test_install import write_config

    (tmp_path / "var/lib/fabric-agent").mkdir(parents=True)
    cfg = write_config(tmp_path / "agent.toml", tmp_path, metrics_port=taken_port, backend="rest",
                       rest_url="http://127.0.0.1:1", contact_timeout_s=2)
    assert main(["agent", "check", "--config", str(cfg), "--json"]) in (3, 5)
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    port = checks["metrics port"]
    assert not port["ok"] and port["exit_code"] == 3 and f"127.0.0.1:{taken_port}" in port["detail"]


def test_a_free_or_disabled_metrics_port_passes_the_check() -> None:
    from fabric_hpc.cli.agent_checks import _metrics_port_ok
    from fabric_hpc.slurm.metrics import AgentMetrics

    assert "no metrics" in _metrics_port_ok(0)
    m = AgentMetrics(0, state_dir="/var/lib/fabric-agent")  # any free port: the running agent's own
    try:
        port = m.server.server_address[1]
        got = _metrics_port_ok(port, "/var/lib/fabric-agent")
        assert "served by the running fabric agent of this state dir" in got
    finally:
        m.close()
    assert _metrics_port_ok(port) == f"127.0.0.1:{port}: free"


def test_a_privileged_port_gets_the_capability_hint() -> None:
    """Port 80 as an unprivileged user (nobody): EACCES, whose fix is a capability or a port >= 1024."""
    import os
    import subprocess
    import sys

    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    if start.exists() and int(start.read_text()) <= 80:
        pytest.skip("this kernel lets any user bind port 80 (net.ipv4.ip_unprivileged_port_start)")
    drop = "import os\nos.getuid() == 0 and os.setuid(65534)\n"  # root: become nobody, imports done
    code = ("from fabric_hpc.slurm.metrics import check_port\n"
            "from fabric_hpc.errors import ConfigError\n" + drop +
            "try:\n    check_port(80)\nexcept ConfigError as e:\n    print(e.message); print(e.hint)\n")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)}, timeout=60)
    assert out.returncode == 0, out.stderr
    message, hint = out.stdout.splitlines()
    assert "cannot serve metrics on 127.0.0.1:80: Permission denied" in message
    assert "CAP_NET_BIND_SERVICE" in hint and "ss -ltnp" not in hint


def test_a_password_in_the_rest_url_is_refused_and_never_printed(tmp_path: Path, capsys) -> None:
    from fabric_hpc.cli.main import main

    argv = ["-v", "agent", "run", "--topology", "superpod:sus=1", "--state-dir", str(tmp_path), "--backend",
            "rest", "--rest-url", "http://u:SECRETPW@127.0.0.1:1", "--contact-timeout", "2"]
    assert main(argv) == 3
    out = capsys.readouterr()
    assert "SECRETPW" not in out.out + out.err
    assert "http://***@127.0.0.1:1" in out.err and "SLURM_JWT" in out.err
    assert main([*argv[:-3], "http://u:SECRETPW@127.0.0.1:99999", *argv[-2:]]) == 3  # a bad port too
    assert "SECRETPW" not in capsys.readouterr().err


def test_a_url_is_shown_without_its_password_wherever_it_is_printed() -> None:
    from fabric_hpc.slurm.client import shown_url
    from fabric_hpc.slurm.rest_backend import RestClient

    assert shown_url("http://u:pw@h:1/x@y") == "http://***@h:1/x@y"
    assert shown_url("http://h:1/a@b") == "http://h:1/a@b" and shown_url("unix:/run/s@x") == "unix:/run/s@x"
    client = RestClient("http://u:SECRETPW@127.0.0.1:1", env={}, timeout=2)  # the library, unchecked
    with pytest.raises(SlurmError) as err:
        client.nodes()
    assert "SECRETPW" not in str(err.value) and "***@127.0.0.1:1" in str(err.value)


def test_with_v_a_start_up_failure_is_an_event_before_the_human_lines(tmp_path: Path) -> None:
    """`fabric -v agent run` with Slurm unreachable: agent.stop says why, cli.error carries the message
    and exit code; the human error:/fix: lines follow (the only lines not starting with '{')."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    argv = ["-v", "agent", "run", "--topology", "superpod:sus=1", "--state-dir", str(tmp_path),
            "--backend", "rest", "--rest-url", "http://127.0.0.1:1", "--contact-timeout", "5"]
    out = subprocess.run([sys.executable, "-c", "import sys; from fabric_hpc.cli.main import main; "
                          "sys.exit(main(sys.argv[1:]))", *argv], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(repo)}, cwd=tmp_path)
    assert out.returncode == 5, out.stderr
    lines = out.stderr.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    human = [line for line in lines if not line.startswith("{")]
    assert [e["event"] for e in events] == ["agent.stop", "cli.error"]
    assert events[0]["reason"] == "error" and events[0]["exit_code"] == 5
    error = events[1]
    assert error["exit_code"] == 5 and error["command"] == "fabric agent run"
    assert "first contact with Slurm failed" in error["error"] and error["hint"]
    assert human[0].startswith("error: first contact") and human[1].startswith("  fix:") and len(human) == 2


def test_a_usage_error_after_v_names_the_command(capsys) -> None:
    from fabric_hpc.cli.main import main

    assert main(["-v", "agent", "run", "--no-such-flag", "--json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["hint"] == "fabric agent run --help"  # was "fabric --help" after -v
