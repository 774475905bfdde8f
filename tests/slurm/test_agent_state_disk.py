"""The agent's state dir on a read-only filesystem, or on a full one (a real tmpfs, mounted by root).

Read-only: `agent run` exited 5 (the code of an answer Slurm refused) rather than 3 (a local problem), and
`agent check` said "not writable by this user — fix: run as the service user" to root. Full: every cycle
failed writing usage.json with the bare "[Errno 28] No space left on device", and `agent status` showed
the last status.json it could write ("failed cycles 0") without saying it was stale."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.agent import check_state_dir
from tests.real import require_real
from tests.slurm.test_agent_actions import Fake, agent, gang

TOPO = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"


def _mount(at: Path, options: str) -> None:
    require_real("slurm", os.geteuid() == 0, "mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(at)], capture_output=True)
    require_real("slurm", done.returncode == 0, f"mount -t tmpfs failed: {done.stderr.decode()[:200]}")


@pytest.fixture()
def mounted(tmp_path: Path):
    at = tmp_path / "mnt"
    at.mkdir()
    yield at
    if subprocess.run(["umount", str(at)], check=False, capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(at)], check=False, capture_output=True)  # a file still open


def test_a_read_only_state_dir_is_a_local_problem_named_as_such(
        mounted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mount(mounted, "size=1m,ro")
    with pytest.raises(ConfigError, match="read-only") as err:
        check_state_dir(mounted)
    assert err.value.exit_code == 3 and "remount" in (err.value.hint or "")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ntopology = "{TOPO}"\nstate_dir = "{mounted}"\ncontact_timeout_s = 1\n')
    assert main(["agent", "run", "--config", str(cfg), "--cycles", "1"]) == 3
    err_text = capsys.readouterr().err
    assert "read-only" in err_text and "Traceback" not in err_text, err_text
    main(["agent", "check", "--config", str(cfg), "--json"])
    [row] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "state dir"]
    assert not row["ok"] and "read-only" in row["detail"] and "service user" not in row["detail"], row


def test_a_full_disk_is_said_in_one_line_with_the_fix_and_status_says_its_file_is_stale(
        mounted: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    _mount(mounted, "size=256k,mode=0755")
    a = agent(mounted, Fake([gang(1)]))
    a.cycle()
    status = json.loads((mounted / "status.json").read_text())
    written = status["ts"] = status["ts"] - 60  # the last good write a minute ago
    (mounted / "status.json").write_text(json.dumps(status))
    with open(mounted / "filler", "wb", buffering=0) as fill:  # the disk full: every new block refused
        with pytest.raises(OSError) as full:
            while True:
                fill.write(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    caplog.set_level(logging.INFO, logger="fabric_hpc.events")
    with pytest.raises(OSError) as raised:
        a.cycle(now=written + 30)
    a._error(raised.value, 1.0)  # what the loop does with a failed cycle
    [error] = [r.event for r in caplog.records  # type: ignore[attr-defined]
               if getattr(r, "event", {}).get("event") == "agent.error"]
    assert f"the disk holding {mounted} is full" in error["error"], error
    assert "free space" in error["hint"] and "\n" not in error["error"], error
    assert f"the disk holding {mounted} is full" in a.last_error
    os.unlink(mounted / "filler")
    a.lock.acquire()  # the agent runs: status compares its file with its last try
    try:
        main(["agent", "status", "--state-dir", str(mounted)])
        out = capsys.readouterr().out
        assert "status.json could not be written" in out and "failed cycles 0" in out, out
        main(["agent", "status", "--state-dir", str(mounted), "--json"])
        st = json.loads(capsys.readouterr().out)
        assert st["status_file_stale"] is True and st["status_file_tried"] >= st["ts"], st
    finally:
        a.lock.release()
        a.audit.close()
