"""The checks of ``fabric agent check`` (one function per row: python, state dir, plugin, running agent,
metrics port, Slurm, slurm.conf, privilege, usage source) and the openers of the Slurm client and the
fabric model from an ``[agent]`` config section, which ``fabric agent run`` uses too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


def _running_agent_ok(section: Any, as_installed: Any = None, fab: Any = None) -> str:
    """The running agent (the holder of the state dir's lock) defers as long as the installed job_submit.lua
    (or, with no agent.job_submit named, this config): a reinstall with another fallback_s applies to the
    agent only once it is restarted. Its fallback_s is the one in its status.json; its other settings are
    this config's or ``as_installed``'s (this config as install writes it: its paths rewritten); its fabric
    model is ``fab`` (this config's, when it loaded)."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inputs import read_json, read_text
    from fabric_hpc.slurm.agent_support import running_model, running_settings
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
    compared = running_model(pid, status, fab, section.topology,
                             as_installed.topology if as_installed is not None else None)
    return (f"pid {pid}: fallback_s {running} s, as {where}; {compared}; "
            + running_settings(pid, status, section, as_installed))


def _python_ok(python: str) -> str:
    from fabric_hpc.slurm.install_checks import check_python

    warnings = check_python(python)
    return "; ".join([f"{python}: imports fabric_hpc", *warnings])


def _state_dir_ok(state_dir: str) -> str:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.agent_support import state_dir_unwritable, state_dir_world_writable

    if os.path.lexists(state_dir) and not os.path.isdir(state_dir):
        raise ConfigError(f"state dir {state_dir} exists but is not a directory",
                          hint="remove it, or set agent.state_dir to a directory "
                               "(fabric slurm install creates it)")
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
    from fabric_hpc.slurm.metrics import check_port, label_text, served_state_dir

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
        if theirs is not None and state_dir and theirs == label_text(os.path.realpath(state_dir)):
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
    """The user the agent runs as (install.service_user; unset: SlurmUser, else root) may modify other
    users' jobs."""
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
