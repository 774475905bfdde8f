"""``fabric agent check`` said "running agent ok" while the running agent ran other policy settings than the
config file (a changed ``preempt_benefit_ratio``, ``tier_map``, ``policy``: read at start only; SIGHUP only
reopens the logs). The agent now records its settings in ``status.json`` (``settings``) and the check
compares them with the file's: they differ -> the row fails (exit 3) naming each and "restart the agent to
apply"."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fabric_hpc.cli.main import main
from fabric_hpc.slurm.agent import Agent, AgentConfig, agent_lock
from tests.slurm.test_agent_actions import Fake
from tests.slurm.test_backfill_reservation_view import FAB

TOPOLOGY = "leaf-spine:hosts=16,hosts_per_leaf=4,gpus=8,cpus=8"


def _status(state: Path, **settings) -> None:
    agent = Agent(Fake([]), FAB, AgentConfig(state_dir=str(state), contact_timeout_s=1.0, **settings))
    agent.cycle()
    status = json.loads((state / "status.json").read_text())
    status["pid"] = os.getpid()  # this process holds the lock: the running agent
    (state / "status.json").write_text(json.dumps(status))


def _row(tmp_path: Path, state: Path, capsys, extra: str = "") -> dict:
    cfg = tmp_path / "check.toml"
    cfg.write_text(f'[agent]\ntopology = "{TOPOLOGY}"\nstate_dir = "{state}"\ncontact_timeout_s = 1\n{extra}')
    main(["agent", "check", "--config", str(cfg), "--json"])
    [r] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "running agent"]
    return r


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    return state


def test_the_status_records_the_settings(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _status(state, preempt_benefit_ratio=5.0, tier_map=["qos:urgent=high"])
    settings = json.loads((state / "status.json").read_text())["settings"]
    assert settings["preempt_benefit_ratio"] == 5.0 and settings["tier_map"] == ["qos:urgent=high"]
    assert settings["policy"] == "fabric" and "state_dir" not in settings


def test_other_settings_fail_the_row_and_say_restart(tmp_path: Path, capsys) -> None:
    state = _state(tmp_path)
    lock = agent_lock(state)
    lock.acquire()
    try:
        _status(state, preempt_benefit_ratio=20.0)
        r = _row(tmp_path, state, capsys, 'preempt_benefit_ratio = 5.0\ntier_map = ["partition:lo=spot"]\n')
        assert not r["ok"] and r["exit_code"] == 3, r
        assert "preempt_benefit_ratio 20.0 (this config: 5.0)" in r["detail"]
        assert "tier_map [] (this config: ['partition:lo=spot'])" in r["detail"]
        assert "restart the agent to apply" in r["detail"]
        r = _row(tmp_path, state, capsys, "preempt_benefit_ratio = 20\n")
        assert r["ok"] and "settings as this config" in r["detail"], r
    finally:
        lock.release()


def test_an_older_agents_status_without_settings_is_not_failed(tmp_path: Path, capsys) -> None:
    state = _state(tmp_path)
    lock = agent_lock(state)
    lock.acquire()
    try:
        (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "fallback_s": 60, "cycles": 3}))
        r = _row(tmp_path, state, capsys)
        assert r["ok"] and "settings not recorded" in r["detail"], r
        assert "its fabric model not compared (not recorded by this agent)" in r["detail"], r
    finally:
        lock.release()


def test_another_fabric_model_fails_the_row(tmp_path: Path, capsys) -> None:
    """Probed live: the agent ran on a model whose leaves were n[1-2], n[3-4]; agent.toml named a new model
    (n[1,3], n[2,4]: re-cabled) and the row said "its other settings as this config", exit 0, while the
    agent kept placing on the old leaves until restarted. The status records the model's digest now."""
    state = _state(tmp_path)
    lock = agent_lock(state)
    lock.acquire()
    try:
        _status(state)
        model = json.loads((state / "status.json").read_text())["model"]
        assert model["hosts"] == 16 and len(model["digest"]) == 16, model
        other = TOPOLOGY.replace("hosts_per_leaf=4", "hosts_per_leaf=2")
        r = _row(tmp_path, state, capsys, "").get("detail")
        assert "settings as this config" in r, r
        cfg = tmp_path / "check.toml"
        cfg.write_text(f'[agent]\ntopology = "{other}"\nstate_dir = "{state}"\ncontact_timeout_s = 1\n')
        main(["agent", "check", "--config", str(cfg), "--json"])
        [row] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "running agent"]
        assert not row["ok"] and row["exit_code"] == 3, row
        assert f"another fabric model than {other}" in row["detail"], row
        assert "restart the agent: systemctl restart" in row["detail"], row
    finally:
        lock.release()


def test_the_model_digest_is_of_the_model_not_its_wording(tmp_path: Path) -> None:
    """Review: the digest was of the file's text: a new description, another hostlist spelling or the
    host types in another order read as another model. It is the graph's now."""
    from fabric_hpc.topology import load_fabric
    from fabric_hpc.topology.io import model_digest

    text = (Path(__file__).resolve().parents[2] / "topology" / "dgx-h100-superpod-4su.yaml").read_text()
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(text)
    b.write_text("# a comment\n" + text.replace("\nname: ", "\nname: renamed-", 1)
                 .replace("features: [h100, nvlink, ib]", "features: [ib, h100, nvlink]"))
    assert a.read_text() != b.read_text() and load_fabric(a).name != load_fabric(b).name
    assert model_digest(load_fabric(a)) == model_digest(load_fabric(b))


def test_a_source_model_changed_since_the_install_says_install_first(tmp_path: Path, capsys) -> None:
    """Review: checked with the source config, a changed source model said "restart the agent", but the
    agent reads the installed copy (<config_dir>/topology.yaml): a restart changed nothing."""
    from fabric_hpc.topology import generators
    from fabric_hpc.topology.io import save_spec

    state = _state(tmp_path)
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    save_spec(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8), conf_dir / "topology.yaml")
    source = tmp_path / "src.yaml"
    save_spec(generators.leaf_spine(16, hosts_per_leaf=2, gpus=8, cpus=8), source)
    lock = agent_lock(state)
    lock.acquire()
    try:
        _status(state)  # the agent runs on the installed model (FAB)
        cfg = tmp_path / "check.toml"
        cfg.write_text(f'[install]\nconfig_dir = "{conf_dir}"\n[agent]\ntopology = "{source}"\n'
                       f'state_dir = "{state}"\ncontact_timeout_s = 1\n')
        main(["agent", "check", "--config", str(cfg), "--json"])
        [row] = [r for r in json.loads(capsys.readouterr().out)["checks"] if r["check"] == "running agent"]
        assert not row["ok"] and "install this config's model first" in row["detail"], row
        assert "is the agent's): fabric slurm install, then restart" in row["detail"], row
    finally:
        lock.release()
