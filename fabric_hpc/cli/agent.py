"""``fabric agent``: the placement agent daemon and its status."""

from __future__ import annotations

import os
from typing import Any

import click

from fabric_hpc.cli.agent_checks import (_check_plugin, _client, _metrics_port_ok, _open_fabric,
                                         _privilege_ok, _python_ok, _running_agent_ok, _slurm_conf_ok,
                                         _slurm_ok, _state_dir_ok, _usage_source_ok)
from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.cli.params import FiniteFloat, InputFile
from fabric_hpc.slurm.limits import FALLBACK_S, FLOATS


def _bounded(name: str) -> FiniteFloat:
    """The CLI type of an agent setting: the bounds AgentConfig checks (fabric_hpc/slurm/limits.py)."""
    lo, hi, lo_open = FLOATS[name]
    return FiniteFloat(lo, hi, lo_open=lo_open)


@click.group("agent")
def group() -> None:
    """The fabric placement agent for Slurm: run, check, status."""



@group.command("run")
@click.option("--config", "config_path", type=InputFile(what="agent config file"), default=None,
              help="Agent config file (TOML/YAML, docs/deploy.md): its [agent] settings; a flag given here wins.")
@click.option("--topology", "topology", default=None,
              help="Fabric model (YAML) whose hosts are the Slurm nodes (required without --config).")
@click.option("--state-dir", default="/var/lib/fabric-agent", show_default=True,
              help="Lock, heartbeat, status and the decision log live here (the plugin reads the heartbeat).")
@click.option("--interval", "interval_s", type=_bounded("interval_s"), default=2.0, show_default=True,
              help="Seconds between cycles.")
@click.option("--fallback", "fallback_s", type=click.IntRange(*FALLBACK_S), default=60, show_default=True,
              help="Deferral per cycle; must match job_submit.lua's FALLBACK_S.")
@click.option("--policy", default="fabric", show_default=True, type=click.Choice(["fabric", "slurm"]))
@click.option("--placement", default="greedy", show_default=True, type=click.Choice(["greedy", "cpsat"]))
@click.option("--compact-wait", "compact_wait_s", type=_bounded("compact_wait_s"), default=None,
              help="Seconds a multi-host gang waits for a compact placement before it may spread "
                   "(the fabric policy's compact_wait_s; default: the policy's).")
@click.option("--preemption/--no-preemption", default=True, show_default=True,
              help="The fabric policy's gang preemption of spot jobs for high-tier jobs.")
@click.option("--preempt-benefit-ratio", "preempt_benefit_ratio", type=_bounded("preempt_benefit_ratio"),
              default=None,
              help="Preempt only when the waiting avoided is at least this many times the GPU-hours the "
                   "victims lose (default: the policy's 20.0; higher: fewer preemptions, lower mean JCT).")
@click.option("--metrics-port", type=int, default=0, show_default=True, help="Prometheus port on 127.0.0.1 (0: off).")
@click.option("--backend", type=click.Choice(["cli", "rest", "pyslurm"]), default="cli", show_default=True,
              help="How to talk to Slurm: its commands, slurmrestd, or pyslurm (Slurm 25.11; needs SLURM_CONF).")
@click.option("--rest-url", default=None, help="slurmrestd address for --backend rest.")
@click.option("--rest-token-file", default=None,
              help="File holding the JWT for --backend rest (read at every request; default: $SLURM_JWT).")
@click.option("--rest-user", default=None, help="User name sent with the JWT (default: $USER).")
@click.option("--slurm-conf", default=None, help="SLURM_CONF for the agent (default: Slurm's own).")
@click.option("--job-submit", default=None, type=InputFile(what="job_submit.lua"),
              help="The installed job_submit.lua: refuse to start when its protocol, state dir or fallback differ.")
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many cycles (default: run until SIGTERM).")
@click.option("--contact-timeout", "contact_timeout_s", type=_bounded("contact_timeout_s"), default=10.0,
              show_default=True,
              help="Seconds Slurm may take to answer the first contact; no answer: exit 5 at once.")
@click.option("--max-backoff", "max_backoff_s", type=_bounded("max_backoff_s"), default=10.0,
              show_default=True,
              help="Longest wait after a failed cycle (the wait doubles from 0.25 s up to this).")
@click.option("--tier-map", "tier_map", multiple=True, metavar="KIND:NAME=TIER",
              help="Map a Slurm QOS or partition to a tier (high, normal, spot): qos:urgent=high, "
                   "partition:preempt=spot. Repeat it. A mapped QOS wins over the partition and the comment.")
@click.option("--ckpt-root", "ckpt_root", default=None,
              help="The TaskProlog's ckpt_root: each running job's last checkpoint time is read from "
                   "<ckpt-root>/<user>/<job name>, so preemption counts only work since it (default: not read).")
@click.option("--backfill-interval", "backfill_interval_s", type=_bounded("backfill_interval_s"), default=0.0,
              show_default=True,
              help="Backfill passes at most this often (s); main passes in between, like the simulator's "
                   "Simulator(backfill_interval_s=30). 0: every cycle backfills.")
@click.option("--record-cycles", is_flag=True, default=False,
              help="Append each cycle's scheduler input and decisions to <state-dir>/cycles.jsonl (replayable).")
@click.option("--pin-timeout", "pin_timeout_s", type=_bounded("pin_timeout_s"), default=60.0,
              show_default=True,
              help="Seconds a pinned job may stay pending on free GPUs before the pin is stale: re-placed "
                   "elsewhere, and handed to Slurm after 3 stale pins.")
@click.option("--usage-source", type=click.Choice(["auto", "slurm", "ledger"]), default="auto", show_default=True,
              help="Fairshare usage: Slurm's accounting (sshare), the agent's ledger (<state-dir>/usage.json), or "
                   "auto: sshare when AccountingStorageType is slurmdbd. A failed sshare falls back to the ledger.")
@click.pass_context
def run(ctx: click.Context, config_path: str | None, cycles: int | None, **flags: Any) -> None:
    """Run the agent: place fabric-marked pending jobs, every interval and when the plugin wakes it.

    Slurm must answer at start (else exit 5 within --contact-timeout). Once running, a failed cycle
    is logged as an agent.error event and retried after a backoff; the agent never stops on an answer.
    """
    from fabric_hpc.slurm.agent import Agent
    from fabric_hpc.slurm.deploy_config import agent_config

    flags["tier_map"] = list(flags["tier_map"])
    section = settings(ctx, config_path, flags)
    _check_plugin(section)
    agent = Agent(_client(section), _open_fabric(section.topology), agent_config(section))
    agent.install_signal_handlers()
    agent.run(max_cycles=cycles)


#: the flags naming a path that the agent's settings need absolute (a config file's must already be)
_CWD_PATHS = ("state_dir", "slurm_conf", "ckpt_root", "job_submit", "rest_token_file")


def settings(ctx: click.Context, config_path: str | None, flags: dict[str, Any]) -> Any:
    """The [agent] settings: the config file's, then every flag given on the command line on top."""
    from click.core import ParameterSource

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.deploy_config import AgentSection, load_config
    from fabric_hpc.validation import parse_model

    base: dict[str, Any] = {}
    explicit: set[str] = set()  # the settings the admin wrote: in the config file or on the command line
    if config_path:
        section = load_config(config_path, missing_hint="check the path, write one (docs/deploy.md), or drop "
                                                         "--config and give --topology")[0].agent
        base, explicit = section.model_dump(), set(section.model_fields_set)
    explicit |= {k for k in flags if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    given = {k: v for k, v in flags.items()
             if not config_path or ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    for key in _CWD_PATHS:  # a path typed on the command line is the shell's: relative to the cwd
        if isinstance(given.get(key), str) and given[key] and not given[key].startswith("/"):
            given[key] = os.path.abspath(given[key])
    merged = {k: v for k, v in {**base, **given}.items() if v is not None}  # None: the setting's default
    _refuse_fabric_only(merged.get("policy", "fabric"), explicit)
    if not merged.get("topology"):
        raise ConfigError("fabric agent run needs --topology or --config",
                          hint="fabric agent run --config /etc/fabric-hpc/agent.toml")
    return parse_model(AgentSection, merged, source=config_path or "fabric agent run")


#: settings of the fabric policy only, by the flag that sets them (the slurm policy has none of them)
_FABRIC_ONLY = {"placement": "--placement", "compact_wait_s": "--compact-wait",
                "preemption": "--preemption/--no-preemption",
                "preempt_benefit_ratio": "--preempt-benefit-ratio"}


def _refuse_fabric_only(policy: str, explicit: set[str]) -> None:
    """ConfigError (exit 3) for a fabric-policy setting given with policy slurm (it would be ignored)."""
    from fabric_hpc.errors import ConfigError

    if policy == "fabric":
        return
    for key, flag in _FABRIC_ONLY.items():
        if key in explicit:
            raise ConfigError(f"{flag} (agent.{key}) applies to --policy fabric only (the slurm policy "
                              "is EASY backfill without preemption): it would be ignored",
                              hint=f"leave {flag} / agent.{key} out, or run --policy fabric")


@group.command("check")
@click.option("--config", "config_path", required=True, type=InputFile(what="agent config file"),
              help="Agent config file (the installed one: <config_dir>/agent.toml).")
@json_option
def check(config_path: str, as_json: bool) -> None:
    """Validate the config, the fabric model, install.python (imports fabric_hpc), the state dir, the
    plugin's protocol, the metrics port (free, or served by the running agent), Slurm connectivity,
    slurmctld's JobSubmitPlugins/TaskProlog/Prolog (fabric's lua and prologs configured), the agent's
    privilege and, with ``usage_source`` slurm or auto, that Slurm keeps fairshare usage (the agent's own
    ``sshare`` probe).

    Exit 0 when all pass; otherwise the exit code of the first failure (3 config, 5 Slurm).
    """
    from fabric_hpc.errors import FabricError
    from fabric_hpc.slurm.deploy_config import load_config
    from fabric_hpc.slurm.tier_check import tier_map_ok
    from fabric_hpc.slurm.unit import installed_agent

    try:
        cfg = load_config(config_path)[0]
    except FabricError as exc:
        if not as_json:
            raise
        render(True, {"ok": False, "checks": [{"check": "config", "ok": False, "detail": str(exc),
                                                "exit_code": exc.exit_code}]}, lambda con: None)
        click.get_current_context().exit(exc.exit_code)
    a = cfg.agent
    results: list[dict[str, Any]] = [{"check": "config", "ok": True, "detail": f"{config_path}: valid"}]
    fab: Any = None

    def step(name: str, fn: Any) -> None:
        try:
            results.append({"check": name, "ok": True, "detail": fn()})
        except FabricError as exc:
            results.append({"check": name, "ok": False, "detail": str(exc), "exit_code": exc.exit_code})

    def model() -> str:
        nonlocal fab
        fab = _open_fabric(a.topology)
        return f"{a.topology}: {len(fab.hosts)} hosts"

    step("fabric model", model)
    step("python", lambda: _python_ok(cfg.install.python))
    step("state dir", lambda: _state_dir_ok(a.state_dir))
    step("plugin", lambda: _check_plugin(a) or "no agent.job_submit named: not checked")
    step("running agent", lambda: _running_agent_ok(a, installed_agent(cfg), fab))
    step("metrics port", lambda: _metrics_port_ok(a.metrics_port, a.state_dir))
    step("slurm", lambda: _slurm_ok(a, fab))
    step("tier map", lambda: tier_map_ok(a.tier_map, _client(a)))
    step("slurm.conf", lambda: _slurm_conf_ok(a, cfg.install))
    step("privilege", lambda: _privilege_ok(a, cfg.install.service_user))
    step("usage source", lambda: _usage_source_ok(a))
    failed = [r for r in results if not r["ok"]]
    render(as_json, {"ok": not failed, "checks": results}, lambda con: con.print(table(
        "fabric agent check", ["check", "result", "detail"],
        [[r["check"], "ok" if r["ok"] else "FAILED", r["detail"]] for r in results])))
    if failed:
        ctx = click.get_current_context()
        ctx.exit(failed[0]["exit_code"])


@group.command("status")
@click.option("--state-dir", default="/var/lib/fabric-agent", show_default=True,
              help="The agent's state dir. The default one missing: the agent never ran here (exit 5); "
                   "one given here missing: a wrong path (exit 3).")
@json_option
def status(state_dir: str, as_json: bool) -> None:
    """Is the agent running, when did it last cycle, what is waiting.

    Exit 0 when it runs and its heartbeat is younger than its fallback_s; 5 when it does not run or
    its heartbeat is older (its cycles fail, or it hangs): Slurm then places the new jobs itself.
    The default --state-dir absent is "not running" (exit 5); a --state-dir given that does not
    exist is a wrong path (exit 3)."""
    from click.core import ParameterSource

    from fabric_hpc.slurm.agent import read_status

    ctx = click.get_current_context()
    if ctx.get_parameter_source("state_dir") == ParameterSource.DEFAULT and not os.path.lexists(state_dir):
        never = {"running": False, "healthy": False, "heartbeat_age_s": None, "lock_holder": None,
                 "state_dir": state_dir,
                 "reason": f"no state directory {state_dir}: the agent never ran here"}
        render(as_json, never, lambda con: con.print(
            f"agent: NOT running (no state directory {state_dir}: it never ran on this host; "
            "pass --state-dir if it runs with another)"))
        ctx.exit(5)
    _check_state_files(state_dir)
    st = read_status(state_dir)
    age, limit = st["heartbeat_age_s"], st.get("fallback_s", 60)
    st["healthy"] = bool(st["running"] and age is not None and age <= limit)
    st["state_dir"], st["reason"] = state_dir, _unhealthy_reason(st, age, limit)

    def human(con) -> None:
        alive = f"running (pid {st['lock_holder']})" if st["running"] else "NOT running"
        beat = "no heartbeat yet" if age is None else f"heartbeat {age} s ago" + (
            f" (older than fallback_s {limit} s)" if age > limit else "")
        con.print(f"agent: {alive}; {beat}; cycles {st.get('cycles', 0)}; "
                  f"last cycle {st.get('cycle_s', 0):.3f} s; failed cycles {st.get('errors', 0)}, "
                  f"failed actions {st.get('failed_actions', 0)}")
        if st.get("status_file_stale"):
            con.print(f"status.json could not be written since {_clock(st['ts'])} (the agent's last try "
                      f"{_clock(st['status_file_tried'])}): the numbers here are from then; its log says why "
                      "(a full or read-only disk?)")
        if st.get("last_error") or st.get("last_action_error"):
            con.print(f"last error: {st.get('last_error') or st.get('last_action_error')}")
        waiting = st.get("waiting") or {}
        con.print(table("waiting jobs", ["job", "reason"], sorted(waiting.items())[:50]))

    render(as_json, st, human)
    if not st["healthy"]:
        click.get_current_context().exit(5)


def _unhealthy_reason(st: dict[str, Any], age: float | None, limit: float) -> str | None:
    """Why ``fabric agent status`` exits 5 (its ``reason``), None when the agent is healthy."""
    if not st["running"]:
        return "not running: no process holds the state dir's agent.lock"
    if age is None:
        return f"running (pid {st['lock_holder']}) but no heartbeat yet"
    if age > limit:
        return (f"running (pid {st['lock_holder']}) but its heartbeat is {age} s old, older than fallback_s "
                f"{limit} s (its cycles fail, or it hangs)")
    return None


def _clock(ts: float) -> str:
    from fabric_hpc.slurm.audit import clock

    return clock(ts)


def _check_state_files(state_dir: str) -> None:
    """The agent's files are checked before they are read: regular files, JSON object, bounded."""
    from pathlib import Path

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inputs import check_path, read_bytes, read_json
    from fabric_hpc.slurm.agent_support import check_status_file

    d = check_path(state_dir, kind="dir", what="agent state directory")
    if not os.access(d, os.R_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise ConfigError(f"agent state directory {d} is not readable by this user",
                          hint="run as root or as the agent's service user (the directory is 0750 service_user:slurm)")
    if (d / "status.json").exists():
        data = read_json(d / "status.json", what="agent status file", limit=64 << 20)
        if not isinstance(data, dict):
            raise ConfigError(f"{d / 'status.json'}: not a JSON object",
                              hint="the agent rewrites it every cycle; remove it and restart the agent")
        check_status_file(d / "status.json", data)  # the types agent status reads
    if Path(d / "heartbeat").exists():
        read_bytes(d / "heartbeat", what="agent heartbeat file", limit=64)
