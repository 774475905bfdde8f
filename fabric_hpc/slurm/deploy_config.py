"""The agent's configuration file (TOML or YAML), read by ``fabric agent run --config`` and ``fabric slurm install``.

Two sections; unknown keys anywhere are errors (``ConfigError``, exit 3), every key is documented
here and in docs/deploy.md::

    [agent]                                   # what `fabric agent run` does (same names as its flags)
    topology = "/etc/fabric-hpc/topology.yaml"
    state_dir = "/var/lib/fabric-agent"
    [install]                                 # where `fabric slurm install` puts Slurm's files
    slurm_conf_dir = "/etc/slurm"
    service_user = "slurm"                    # default: SlurmUser (scontrol show config), else root
"""

from __future__ import annotations

import os
import posixpath
import sys
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm.agent_config import AgentConfig
from fabric_hpc.slurm.limits import MAX_GPUS_PER_NODE, check_int
from fabric_hpc.slurm.plugins import account_name, cluster_path, plain_text
from fabric_hpc.validation import StrictModel, parse_model

DEFAULT_STATE_DIR = "/var/lib/fabric-agent"
DEFAULT_CONFIG_DIR = "/etc/fabric-hpc"
BLOCK_SIZE = (1, 1 << 20)  # as `fabric topology export --block-size`


def _cluster_dir(value: str) -> str:
    return cluster_path(value, what="directory")


class AgentSection(AgentConfig):
    """``[agent]``: the settings of ``fabric agent run`` (a flag given on the command line wins)."""

    topology: str = Field(description="Fabric model the agent places on: a YAML file or a generator reference "
                                      "(superpod:sus=4). `fabric slurm install` copies it to <config_dir>/topology.yaml.")
    state_dir: str = Field(default=DEFAULT_STATE_DIR, description="Lock, heartbeat, status.json and "
                           "decisions.jsonl. job_submit.lua reads the heartbeat and rewrites the one-line "
                           "wake file in <state_dir>.plugin (root's, made by install), never here.")
    backend: Literal["cli", "rest", "pyslurm"] = Field(default="cli", description="How the agent talks to Slurm.")
    rest_url: str | None = Field(default=None, description="slurmrestd address for backend = rest.")
    rest_token_file: str | None = Field(default=None, description="backend = rest: the file holding the JWT "
                                        "(scontrol token output; 0600/0640, root's or the service user's), "
                                        "read at every request, so a renewed token needs no restart. "
                                        "Default: SLURM_JWT of the environment (an installed unit has none).")
    rest_user: str | None = Field(default=None, description="backend = rest: the user name sent with the JWT "
                                  "(X-SLURM-USER-NAME; the token's username=). Default: $USER.")
    slurm_conf: str | None = Field(default=None, description="SLURM_CONF for the agent (default: Slurm's own).")
    job_submit: str | None = Field(default=None, description="The installed job_submit.lua: the agent refuses to "
                                   "start when its protocol, state_dir or fallback_s differ (install sets it).")

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str) -> str:
        cluster_path(value, what="directory")
        if posixpath.normpath(value) in ("/", "//"):
            raise ConfigError(f"state_dir {value!r} is the root directory",
                              hint=f"give the agent a directory of its own, e.g. {DEFAULT_STATE_DIR}")
        return value

    @field_validator("slurm_conf")
    @classmethod
    def _slurm_conf(cls, value: str | None) -> str | None:  # the unit's Environment=SLURM_CONF=
        return None if value is None else cluster_path(value, what="slurm_conf",
                                                       example="/etc/slurm/slurm.conf")

    @field_validator("rest_token_file")
    @classmethod
    def _token_file(cls, value: str | None) -> str | None:  # read by the service: an absolute path
        return None if value is None else cluster_path(value, what="rest_token_file",
                                                       example="/etc/fabric-hpc/slurm.jwt")

    @field_validator("rest_user")
    @classmethod
    def _rest_user(cls, value: str | None) -> str | None:
        return None if value is None else account_name(value, what="rest_user")

    @field_validator("topology", "rest_url", "job_submit")
    @classmethod
    def _one_line(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else plain_text(value, what=str(info.field_name))


class InstallSection(StrictModel):
    """``[install]``: where ``fabric slurm install`` writes and who owns what."""

    slurm_conf_dir: str = Field(default="/etc/slurm", description="Directory of slurm.conf: job_submit.lua, "
                                "topology.conf (or topology.yaml) and gres.conf go here. Default: the "
                                "directory of agent.slurm_conf when set, else /etc/slurm.")
    config_dir: str = Field(default=DEFAULT_CONFIG_DIR, description="task_prolog.py, prolog.json, the fabric "
                            "model (topology.yaml) and this file (agent.toml / agent.yaml).")
    unit_dir: str = Field(default="/etc/systemd/system", description="Where fabric-agent.service goes.")
    service_user: str | None = Field(default=None, description="User the agent runs as; owns state_dir. It must "
                                     "be allowed to modify other users' jobs: SlurmUser, root, or a Slurm operator "
                                     "(sacctmgr modify user NAME set AdminLevel=Operator; needs slurmdbd). "
                                     "Default: the cluster's SlurmUser (scontrol show config), else root.")
    slurm_group: str = Field(default="slurm", description="Group of SlurmUser: may read the heartbeat and "
                             "write the wake file in <state_dir>.plugin (job_submit.lua runs inside "
                             "slurmctld).")
    topology_format: Literal["auto", "conf", "yaml"] = Field(
        default="auto", description="topology.conf, or topology.yaml (Slurm 25.05+); auto: yaml when Slurm is "
                                    "25.05 or newer and this fabric-hpc can write it, else conf.")
    topology_plugin: Literal["tree", "block"] = Field(default="tree", description="topology/tree or "
                                                      "topology/block (Slurm 23.11+).")
    block_size: int | None = Field(default=None, description="topology/block's base block size (1..1048576, "
                                   "at most the smallest block); default: the size of the blocks, which must "
                                   "then all be equal (as `fabric topology export --block-size`).")
    slurm_version: str | None = Field(default=None, description="Slurm version (e.g. 25.11); default: "
                                      "`scontrol --version`.")
    max_gpus_per_node: int | None = Field(default=None, description="job_submit.lua's limit per node "
                                          "(1..1024); "
                                          "default: the most GPUs a host of the fabric model has.")
    ckpt_root: str = Field(default="/shared/checkpoints", description="TaskProlog: FABRIC_CKPT_DIR is "
                           "<ckpt_root>/<user>/<job name>.")
    topo_dir: str = Field(default="/var/lib/fabric-hpc/nccl", description="Where each host's NCCL topology "
                          "file lives (prolog.json's topo_dir; see docs/slurm.md, TaskProlog).")
    gres_device_dir: str = Field(default="/dev", description="gres.conf: File=<dir>/nvidiaN.")
    python: str = Field(default_factory=lambda: sys.executable, description="Interpreter that imports fabric_hpc "
                        "(the TaskProlog's first line and the unit's ExecStart); default: the one running install.")

    @field_validator("max_gpus_per_node")
    @classmethod
    def _max_gpus(cls, value: int | None) -> int | None:
        return None if value is None else check_int("max_gpus_per_node", value, MAX_GPUS_PER_NODE)

    @field_validator("block_size")
    @classmethod
    def _block_size(cls, value: int | None) -> int | None:
        return None if value is None else check_int("block_size", value, BLOCK_SIZE)

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:  # the TaskProlog's #! line and the unit's ExecStart
        cluster_path(value, what="python", example="/opt/fabric-hpc/bin/python")
        if any(c.isspace() for c in value):
            raise ConfigError(f"python {value!r} holds a space: a #! line cannot name it",
                              hint="link the interpreter from a path without spaces")
        return value

    @field_validator("service_user", "slurm_group")
    @classmethod
    def _account(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else account_name(value, what=str(info.field_name))

    _dirs = field_validator("slurm_conf_dir", "config_dir", "unit_dir", "ckpt_root", "topo_dir",
                            "gres_device_dir")(_cluster_dir)

    @field_validator("gres_device_dir")
    @classmethod
    def _device_dir(cls, value: str) -> str:  # gres.conf's File=<dir>/nvidiaN must read back as one file
        from fabric_hpc.topology.export import check_device_dir

        return check_device_dir(value)


class DeployConfig(StrictModel):
    """The whole file."""

    agent: AgentSection
    install: InstallSection = InstallSection()

    @model_validator(mode="after")
    def _conf_dir_of_slurm_conf(self) -> DeployConfig:
        """``install.slurm_conf_dir`` not given: the directory of ``agent.slurm_conf`` when that is set
        (slurmctld reads job_submit.lua, gres.conf and topology.conf beside its slurm.conf), else
        /etc/slurm. A derived value stays out of ``model_fields_set``: install's check against the running
        slurmctld refuses a directory the admin did not choose (install_checks.check_slurm_conf_dir)."""
        conf = self.agent.slurm_conf
        if not conf or not conf.startswith("/") or "slurm_conf_dir" in self.install.model_fields_set \
                or posixpath.dirname(conf) == "/":
            return self
        given = self.install.model_dump(exclude_unset=True)
        install = InstallSection.model_validate({**given, "slurm_conf_dir": posixpath.dirname(conf)})
        install.__pydantic_fields_set__.discard("slurm_conf_dir")
        object.__setattr__(self, "install", install)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _own_state_dir(self) -> DeployConfig:
        """The state dir is fabric's alone: install gives it to the service user (chown, chmod 0750) and
        ``--purge-state`` empties it, so it may not be, hold or sit in a directory of Slurm or of install."""
        from fabric_hpc.slurm.manifest import inside, norm

        state = norm(self.agent.state_dir)
        if state == "/":
            raise ValueError("agent.state_dir '/' is the root directory: the agent needs a directory of its "
                             f"own (e.g. {DEFAULT_STATE_DIR})")
        others = {f"install.{k}": getattr(self.install, k) for k in
                  ("slurm_conf_dir", "config_dir", "unit_dir", "topo_dir", "ckpt_root", "gres_device_dir")}
        if self.agent.ckpt_root:
            others["agent.ckpt_root"] = self.agent.ckpt_root
        if self.agent.slurm_conf:
            others["the directory of agent.slurm_conf"] = posixpath.dirname(self.agent.slurm_conf)
        for key, other in others.items():
            other = norm(other)
            if inside(state, other) or inside(other, state):
                how = "is" if state == other else "is inside" if inside(state, other) else "holds"
                raise ValueError(f"agent.state_dir {self.agent.state_dir!r} {how} {key} {other!r}: the agent "
                                 f"needs a directory of its own (e.g. {DEFAULT_STATE_DIR})")
        return self


#: Largest agent config file read (bytes): a few kilobytes in practice.
MAX_CONFIG_BYTES = 1 << 20


#: The fix for a config file that does not exist where the command requires one (``fabric agent
#: check``, ``fabric slurm install``/``uninstall``: their --config cannot be dropped).
MISSING_CONFIG_HINT = ("check the path (the installed one is <config_dir>/agent.toml, by default "
                       f"{DEFAULT_CONFIG_DIR}/agent.toml), or write one (docs/deploy.md)")


def load_config(path: str | os.PathLike[str], *, missing_hint: str = MISSING_CONFIG_HINT
                ) -> tuple[DeployConfig, str]:
    """The validated file and its text; TOML (``.toml``) or YAML (``.yaml``/``.yml``), read through the
    input boundary (:mod:`fabric_hpc.inputs`): a regular file of at most :data:`MAX_CONFIG_BYTES`
    (a FIFO or a device is refused before it is opened for reading), UTF-8, YAML without anchors,
    aliases or duplicate keys (TOML refuses duplicates itself). ``missing_hint``: the fix when the
    file does not exist (the command's: where --config is optional, dropping it is one)."""
    from fabric_hpc.inputs import load_yaml, read_text

    p = Path(path)
    if p.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{p}: unknown config format {p.suffix or '(no suffix)'}",
                          hint="name it agent.toml or agent.yaml")
    try:
        text = read_text(p, what="agent config file", limit=MAX_CONFIG_BYTES)
    except NotFoundError:
        raise NotFoundError(f"no agent config file {p}", hint=missing_hint) from None
    if p.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {' '.join(str(exc).split())}") from None
    else:
        data = load_yaml(text, str(p))[0]
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{p}: the config is a {type(data).__name__}, not a mapping of sections",
                          hint="start with an `agent:` section (docs/deploy.md)")
    return parse_model(DeployConfig, data if data is not None else {}, source=str(p),
                       hint="every key: docs/deploy.md (agent config file)"), text


def agent_config(section: AgentSection) -> AgentConfig:
    """The :class:`AgentConfig` part of ``[agent]``."""
    return AgentConfig(**{k: getattr(section, k) for k in AgentConfig.model_fields})


def with_service_user(cfg: DeployConfig, env: dict[str, str] | None = None) -> DeployConfig:
    """``cfg`` with ``install.service_user`` set: as given, else the cluster's SlurmUser, else root."""
    if cfg.install.service_user:
        return cfg
    from fabric_hpc.slurm.privilege import detect_slurm_user

    user = detect_slurm_user(env) or "root"
    return cfg.model_copy(update={"install": cfg.install.model_copy(update={"service_user": user})})
