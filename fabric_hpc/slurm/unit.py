"""Two files ``fabric slurm install`` writes from the config itself: the installed ``agent.toml`` and
the agent's systemd unit (every value written verbatim, so each is checked first: :func:`unit_safe`)."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.deploy_config import AgentSection, DeployConfig
from fabric_hpc.slurm.plugins import plugin_dir


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # a JSON string is a TOML basic string, but for \ud83d\ude00 (TOML has no surrogate pairs: any
    # character beyond U+FFFF is written as itself) and DEL (TOML wants it escaped)
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def installed_agent(cfg: DeployConfig) -> AgentSection:
    """``cfg``'s ``[agent]`` as install writes it: the installed fabric model and
    job_submit.lua, and the TaskProlog's checkpoint root unless ``[agent]`` names its own."""
    i = cfg.install
    return cfg.agent.model_copy(update={"topology": str(Path(i.config_dir) / "topology.yaml"),
                                        "job_submit": str(Path(i.slurm_conf_dir) / "job_submit.lua"),
                                        "ckpt_root": cfg.agent.ckpt_root or i.ckpt_root})


def agent_toml(cfg: DeployConfig) -> str:
    """The installed config: every setting written out; the agent reads the installed fabric model
    and plugin, and the checkpoints under the TaskProlog's root (install.ckpt_root) unless [agent]
    names its own ckpt_root: without one it reads no checkpoint times (docs/checkpoint.md)."""
    i, agent = cfg.install, installed_agent(cfg)
    out = ["# fabric agent config (docs/deploy.md lists every key)", "[agent]"]
    out += [f"{k} = {_toml_value(v)}" for k, v in agent.model_dump().items() if v is not None]
    out += ["", "[install]"]
    out += [f"{k} = {_toml_value(v)}" for k, v in i.model_dump().items() if v is not None]
    return "\n".join(out) + "\n"


#: Characters systemd.syntax(7) gives a meaning in a unit's values: word separators, quotes and their
#: escapes, % specifiers and $ variables (ExecStart). The unit writes values verbatim, so they are refused.
UNIT_SPECIAL = frozenset("\"'\\%$;")


def unit_safe(values: dict[str, str | None]) -> None:
    """ConfigError naming the first value (by its config key) that cannot be written verbatim into a
    unit line: a control character (a newline would add a line, e.g. ``ExecStartPre=+…`` run as root),
    whitespace, or a character of :data:`UNIT_SPECIAL`; the paths must also be absolute."""
    for key, value in values.items():
        if value is None:
            continue
        bad = sorted({repr(c) for c in value
                      if c.isspace() or c in UNIT_SPECIAL or ord(c) < 32 or ord(c) == 127})
        if bad:
            raise ConfigError(f"{key} {value!r} cannot go into the systemd unit: it holds {', '.join(bad)}",
                              hint=f"give {key} a value without spaces, quotes, backslashes, ';', '%' or '$'")
        if key.split(".")[1] not in ("service_user", "slurm_group") and not value.startswith("/"):
            raise ConfigError(f"{key} {value!r}: the unit needs an absolute path", hint=f"give {key} as /...")


def unit_text(cfg: DeployConfig) -> str:
    """The agent's systemd unit: a notify service (ready once Slurm answered), restarted on failure,
    unprivileged and read-only but its state."""
    a, i = cfg.agent, cfg.install
    unit_safe({"install.python": i.python, "agent.state_dir": a.state_dir, "install.config_dir": i.config_dir,
               "agent.slurm_conf": a.slurm_conf, "install.service_user": i.service_user,
               "install.slurm_group": i.slurm_group})
    env = f"Environment=SLURM_CONF={a.slurm_conf}\n" if a.slurm_conf else ""
    return f"""[Unit]
Description=fabric-hpc placement agent for Slurm
# Documentation: `fabric docs deploy` (docs/deploy.md, shipped in the wheel)
Wants=network-online.target
After=network-online.target munge.service slurmctld.service

[Service]
Type=notify
NotifyAccess=main
TimeoutStartSec={int(a.contact_timeout_s) + 30}
User={i.service_user}
Group={i.slurm_group}
{env}ExecStart={i.python} -m fabric_hpc.cli agent run --config {Path(i.config_dir) / 'agent.toml'}
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
KillSignal=SIGTERM
UMask=0027
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
SystemCallArchitectures=native
CapabilityBoundingSet=
ReadWritePaths={a.state_dir}
# the heartbeat job_submit.lua reads (rewritten in place; its directory is root's: docs/slurm.md)
ReadWritePaths=-{plugin_dir(a.state_dir)}/heartbeat

[Install]
WantedBy=multi-user.target
"""
