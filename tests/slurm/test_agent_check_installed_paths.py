"""``fabric agent check`` against the source config (the one given to ``fabric slurm install``) did not
find the running agent's settings there: install rewrites ``ckpt_root`` (the TaskProlog's root when
``[agent]`` names none; the model and job_submit.lua paths too), so the check said "restart the agent"
for an agent running exactly the installed config. A setting is now as the config's when it is the
config's own value or the one install writes; another value still fails the row."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.cli.main import main
from fabric_hpc.slurm.agent import agent_lock
from tests.slurm.test_agent_check_settings import TOPOLOGY, _state, _status


def _row(tmp_path: Path, state: Path, capsys, agent_extra: str = "") -> dict:
    cfg = tmp_path / "source.toml"
    cfg.write_text(f'[agent]\ntopology = "{TOPOLOGY}"\nstate_dir = "{state}"\ncontact_timeout_s = 1\n'
                   f'{agent_extra}[install]\nckpt_root = "/shared/ckpt-site"\n')
    main(["agent", "check", "--config", str(cfg), "--json"])
    [r] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "running agent"]
    return r


def test_the_installed_ckpt_root_is_the_source_configs(tmp_path: Path, capsys) -> None:
    state = _state(tmp_path)
    lock = agent_lock(state)
    lock.acquire()
    try:
        _status(state, ckpt_root="/shared/ckpt-site")  # as install wrote it: [install] ckpt_root
        r = _row(tmp_path, state, capsys)
        assert r["ok"] and "settings as this config" in r["detail"], r
        _status(state, ckpt_root="/shared/elsewhere")  # neither the config's nor install's
        r = _row(tmp_path, state, capsys)
        assert not r["ok"] and "ckpt_root '/shared/elsewhere'" in r["detail"], r
        r = _row(tmp_path, state, capsys, 'ckpt_root = "/shared/elsewhere"\n')
        assert r["ok"], r
    finally:
        lock.release()
