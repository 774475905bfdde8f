"""``fabric agent``: the placement agent daemon and its status."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

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
                "preemption": "--no-preemption", "preempt_benefit_ratio": "--preempt-benefit-ratio"}


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


def _client(section: Any) -> Any:
    from fabric_hpc.slurm import open_client

    if section.slurm_conf:
        os.environ["SLURM_CONF"] = section.slurm_conf  # pyslurm and the Slurm commands read it
    return open_client(section.backend, url=section.rest_url, token_file=section.rest_token_file,
                       user=section.rest_user, cli_words=True)


def _open_fabric(ref: str) -> Any:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.topology import open_fabric

    if ref == "discover":  # this host alone: the agent places on the whole cluster
        raise ConfigError("topology 'discover' is for `fabric slurm install` only: it reads this host's "
                          "GPUs, and the agent needs the whole cluster's fabric model",
                          hint="give the model's file: the config install wrote names "
                               "<config_dir>/topology.yaml (or write one: fabric topology discover -o FILE "
                               "on each host type, or a generator reference such as superpod:sus=4)")
    return open_fabric(ref)


#: Largest job_submit.lua read for the plugin check (bytes); the shipped one is about 20 KB.
MAX_PLUGIN_BYTES = 1 << 20


def _check_plugin(section: Any) -> str | None:
    """The installed job_submit.lua agrees with this agent (protocol, state dir, fallback); None: none named.
    Read through the input boundary: a regular UTF-8 file of at most MAX_PLUGIN_BYTES."""
    from fabric_hpc.errors import NotFoundError
    from fabric_hpc.inputs import read_text
    from fabric_hpc.slurm.plugins import PROTOCOL_VERSION, check_plugin

    if not section.job_submit:
        return None
    path = section.job_submit
    try:
        text = read_text(path, what="job_submit.lua (agent.job_submit)", limit=MAX_PLUGIN_BYTES)
    except NotFoundError:
        raise NotFoundError(f"no job_submit.lua at {path} (agent.job_submit)",
                            hint="fabric slurm install --config FILE writes it") from None
    check_plugin(text, state_dir=section.state_dir, fallback_s=section.fallback_s, source=str(path))
    return f"{path}: protocol {PROTOCOL_VERSION}, state dir and fallback agree"


def _running_agent_ok(section: Any, as_installed: Any = None) -> str:
    """The running agent (the holder of the state dir's lock) defers as long as the installed job_submit.lua
    (or, with no agent.job_submit named, this config): a reinstall with another fallback_s applies to the
    agent only once it is restarted. Its fallback_s is the one in its status.json; its other settings are
    this config's or ``as_installed``'s (this config as install writes it: its paths rewritten)."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inputs import read_json, read_text
    from fabric_hpc.slurm.agent_support import running_settings
    from fabric_hpc.slurm.manifest import UNIT_NAME, running_agent
    from fabric_hpc.slurm.plugins import lua_settings

    pid = running_agent(Path(section.state_dir)) if os.path.isdir(section.state_dir) else None
    if pid is None:
        return "no agent runs on the state dir: nothing to compare"
    try:
        status = read_json(Path(section.state_dir) / "status.json", what="agent status file", limit=64 << 20)
    except (OSError, ValueError):  # ConfigError too (a FIFO is refused, never blocks)
        status = {}
    running = status.get("fallback_s") if isinstance(status, dict) and status.get("pid") == pid else None
    if running is None:
        return f"pid {pid}: no status of it yet (its fallback_s not known)"
    installed, where = section.fallback_s, "this config"
    if section.job_submit:
        try:
            found = lua_settings(read_text(section.job_submit, what="job_submit.lua", limit=MAX_PLUGIN_BYTES))
            installed, where = int(found["fallback_s"]), section.job_submit
        except (ConfigError, KeyError, ValueError):
            pass  # the plugin row says what is wrong with it
    if running != installed:
        raise ConfigError(f"the running agent (pid {pid}) defers jobs for {running} s, {where} for "
                          f"{installed} s (new jobs wait the one, the agent renews the other)",
                          hint="restart the agent to apply the installed settings: "
                               f"systemctl restart {UNIT_NAME}")
    return (f"pid {pid}: fallback_s {running} s, as {where}; "
            + running_settings(pid, status, section, as_installed))


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
    step("running agent", lambda: _running_agent_ok(a, installed_agent(cfg)))
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


def _python_ok(python: str) -> str:
    from fabric_hpc.slurm.install_checks import check_python

    check_python(python)
    return f"{python}: imports fabric_hpc"


def _state_dir_ok(state_dir: str) -> str:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.agent_support import state_dir_unwritable, state_dir_world_writable

    if os.path.lexists(state_dir) and not os.path.isdir(state_dir):
        raise ConfigError(f"state dir {state_dir} exists but is not a directory",
                          hint="remove it, or set agent.state_dir to a directory (fabric slurm install creates it)")
    st = os.stat(state_dir) if os.path.isdir(state_dir) else None
    if st is None:
        raise ConfigError(f"no state dir {state_dir}", hint="fabric slurm install creates it")
    # a read-only filesystem, this user may not write, or every user may (as `fabric agent run` refuses)
    if problem := state_dir_unwritable(state_dir) or state_dir_world_writable(state_dir):
        raise problem
    return f"{state_dir}: writable, mode {st.st_mode & 0o777:o}"


def _metrics_port_ok(port: int, state_dir: str | None = None) -> str:
    """The agent can serve its metrics on 127.0.0.1:``port``, or its running self serves them there: the
    listener's ``fabric_agent_info`` names ``state_dir`` (resolved), not another agent's."""
    import urllib.request

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.metrics import check_port, served_state_dir

    if not port:
        return "metrics_port 0: no metrics served"
    try:
        check_port(port)
    except ConfigError:
        try:  # taken: by this very agent, running (its /metrics names its state dir), or by something else
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                theirs = served_state_dir(resp.read(1 << 20).decode("utf-8", "replace"))
        except OSError:
            theirs = None
        if theirs is not None and state_dir and theirs == os.path.realpath(state_dir):
            return f"127.0.0.1:{port}: served by the running fabric agent of this state dir"
        if theirs is not None:
            whose = f"of state dir {theirs}" if theirs else \
                "that does not name its state dir (an older version)"
            raise ConfigError(f"cannot serve metrics on 127.0.0.1:{port}: another fabric agent, {whose}, "
                              f"serves it (this config's state dir is {state_dir})",
                              hint="give each agent its own metrics_port (--metrics-port), or stop the other "
                                   "agent") from None
        raise
    return f"127.0.0.1:{port}: free"


def _slurm_ok(section: Any, fab: Any) -> str:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.agent import first_contact, gpu_mismatch, model_overlap

    nodes = first_contact(_client(section), section.contact_timeout_s) or []
    names = [n.name for n in nodes]
    overlap = model_overlap(fab, names) if fab is not None else f"{len(names)} Slurm nodes"
    if fab is not None and (mismatch := gpu_mismatch(fab, nodes)):
        raise ConfigError(mismatch, hint="the model must describe the nodes Slurm schedules: regenerate the "
                          "topology file (fabric topology discover on the node) or fix the node's Gres")
    return f"{section.backend} backend answers: {overlap}"


def _slurm_conf_ok(section: Any, install: Any) -> str:
    """slurmctld (scontrol show config) runs fabric's job_submit.lua (lua in JobSubmitPlugins) and the
    prologs install wrote in install.config_dir (TaskProlog, and Prolog where this version has one),
    those that are there: a by-hand setup (``fabric slurm plugin-config``) may have none."""
    from importlib import resources

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.plugins import PLUGIN_PACKAGE, SCRIPTS
    from fabric_hpc.slurm.slurm_settings import job_submit_line, plugins, running_settings
    from fabric_hpc.slurm.usage_source import command_runner

    have = running_settings(run=command_runner(_client(section))) or {}
    missing, add = [], []
    if "lua" not in plugins(have.get("JobSubmitPlugins")):
        missing.append(f"JobSubmitPlugins is {have.get('JobSubmitPlugins') or '(none)'}: no lua")
        add.append(job_submit_line(have.get("JobSubmitPlugins")))
    for name, key in SCRIPTS.items():  # the prologs install wrote here (a by-hand setup may have none)
        want = str(Path(install.config_dir) / name)
        if resources.files(PLUGIN_PACKAGE).joinpath(name).is_file() and Path(want).is_file() and \
                want not in [v.strip() for v in have.get(key, "").split(",")]:
            missing.append(f"{key} is {have.get(key) or '(none)'}, not {want}")
            add.append(f"{key}={want}")
    if missing:
        raise ConfigError("slurmctld does not run fabric's plugins (scontrol show config): "
                          + "; ".join(missing),
                          hint=f"set in slurm.conf: {'  '.join(add)}; then `scontrol reconfigure` "
                               "(fabric slurm install prints these lines)")
    return (f"JobSubmitPlugins={have['JobSubmitPlugins']}, "
            + ", ".join(f"{k}={have[k]}" for k in SCRIPTS.values() if have.get(k)))


def _privilege_ok(section: Any, service_user: str | None) -> str:
    """The user the agent runs as (install.service_user; unset: SlurmUser, else root) may modify other users' jobs."""
    from fabric_hpc.slurm.privilege import check_privilege
    from fabric_hpc.slurm.usage_source import command_runner

    run = command_runner(_client(section))
    return check_privilege(run, service_user)


def _usage_source_ok(section: Any) -> str:
    """The fairshare usage the agent will take: ``sshare`` as the agent reads it (``slurm``; a failing or
    empty answer fails), or the source ``auto`` picks."""
    from fabric_hpc.slurm.sshare import read_usage
    from fabric_hpc.slurm.usage_source import command_runner, has_slurmdbd

    mode = section.usage_source
    if mode == "ledger":
        return "usage_source = ledger: the agent's own usage ledger"
    run = command_runner(_client(section))
    if mode == "auto" and not has_slurmdbd(run):
        return "usage_source = auto: no AccountingStorageType=accounting_storage/slurmdbd: the agent's ledger"
    found = read_usage(run)  # NoAccounting (exit 5) when sshare lists no user association
    return (f"usage_source = {mode}: sshare answers {len(found.usage)} account(s) with user associations "
            f"({found.unit})")


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
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


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
