"""What ``fabric slurm install`` writes (:mod:`fabric_hpc.slurm.install` writes it, and re-exports
these): the plan of files with their header comments, the slurm.conf lines the admin adds, and the
checks of the topology format and plugin against the Slurm that will read them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc import __version__
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child
from fabric_hpc.slurm.deploy_config import DeployConfig
from fabric_hpc.slurm.limits import MAX_GPUS_PER_NODE
from fabric_hpc.slurm.manifest import UNIT_NAME
from fabric_hpc.slurm.site_gres import KEPT_HEADER, SiteGres
from fabric_hpc.slurm.unit import agent_toml, unit_text
from fabric_hpc.topology import Fabric
from fabric_hpc.topology.export import BLOCK_SINCE

#: Seconds ``scontrol --version`` has to answer (no answer: the Slurm version is not known)
SCONTROL_TIMEOUT_S = 10
HEADER = ("Written by `fabric slurm install` (fabric-hpc {v}); `fabric slurm uninstall` removes it. "
          "Edit the agent config and reinstall instead of editing this file.")


@dataclass(frozen=True)
class Planned:
    path: str   # where the file lives on the cluster (without root)
    text: str
    mode: int = 0o644
    what: str = ""  # in words, for a refusal ("Slurm's topology.yaml")


def _header(comment: str) -> str:
    return f"{comment} {HEADER.format(v=__version__)}\n"


def plan(cfg: DeployConfig, fab: Fabric, *, slurm_version: str | None,
         job_submit_plugins: str | None = None, gres_types: str | None = None,
         node_gres: Mapping[str, str] | None = None,
         site_gres: SiteGres | None = None) -> tuple[list[Planned], list[str]]:
    """The files install writes, and the slurm.conf lines the admin adds (``JobSubmitPlugins``: the
    site's current ``job_submit_plugins`` kept, lua added; ``GresTypes``: the site's ``gres_types``
    kept, gpu added; node lines with each node's other GRES of ``node_gres``, ``{node: "nvme:1"}``).
    gres.conf keeps what ``site_gres`` kept of the site's (:mod:`fabric_hpc.slurm.site_gres`)."""
    from fabric_hpc.slurm.slurm_settings import gres_types_line, job_submit_line

    from fabric_hpc.slurm.plugins import render_job_submit
    from fabric_hpc.topology import dump_spec, export, export_yaml

    a, i = cfg.agent, cfg.install
    sc, cd = Path(i.slurm_conf_dir), Path(i.config_dir)
    lua = render_job_submit(state_dir=a.state_dir, fallback_s=a.fallback_s,
                            max_gpus_per_node=_max_gpus_per_node(cfg, fab))
    prolog_json = json.dumps({"topology": str(cd / "topology.yaml"), "topo_dir": i.topo_dir,
                              "ckpt_root": i.ckpt_root}, indent=2) + "\n"
    use_yaml = _topology_yaml(i.topology_format, slurm_version)
    # auto: Slurm would read names such as '01' from topology.yaml as numbers; topology.conf keeps them
    retyped = export_yaml.yaml_retyped_names(fab) if use_yaml and i.topology_format == "auto" else []
    use_yaml = use_yaml and not retyped
    _check_slurm_supports(i.topology_plugin, use_yaml, slurm_version)
    if use_yaml:
        topo = Planned(str(sc / "topology.yaml"), _header("#") + export_yaml.topology_yaml(
                           fab, default=i.topology_plugin, block_size=i.block_size),
                       what="Slurm's topology.yaml (install.slurm_conf_dir)")
    else:
        topo = Planned(str(sc / "topology.conf"), _header("#") + export.topology_conf(
            fab, i.topology_plugin, block_size=i.block_size,
            slurm_version=version_tuple(slurm_version) if slurm_version else None))
    scripts = _scripts(cfg)
    files = [
        Planned(str(sc / "job_submit.lua"), _header("--") + lua),
        topo,
        Planned(str(sc / "gres.conf"), _header("#") + _gres_conf(fab, i.gres_device_dir, site_gres)),
        *scripts.values(),
        Planned(str(cd / "prolog.json"), prolog_json),
        Planned(str(cd / "topology.yaml"), _header("#") + dump_spec(fab.spec),
                what="the fabric model (install.config_dir)"),
        Planned(str(cd / "agent.toml"), _header("#") + agent_toml(cfg)),
        Planned(str(Path(i.unit_dir) / UNIT_NAME), _header("#") + unit_text(cfg)),
    ]
    _one_file_per_path(files)
    lines = [job_submit_line(job_submit_plugins), *(_conf_line(key, f.path) for key, f in scripts.items()),
             gres_types_line(gres_types)]
    if use_yaml:
        lines.append(f"# {topo.path} (Slurm 25.05+) is read first: TopologyPlugin and topology.conf "
                     "are then ignored")
    else:
        if retyped:
            lines.append(f"# {topo.path}, not topology.yaml: there {retyped[0]} (Slurm reads any "
                         "topology.yaml value that looks like a number, boolean or null as one)")
        lines.append(f"TopologyPlugin=topology/{i.topology_plugin}")
    if i.topology_plugin == "block" and fab.spec.nvlink_domains and (note := export.outside_blocks_note(fab)):
        lines.append(f"# {note}")
    lines += ["# node lines (must agree with the fabric model):",
              *export.slurm_nodes_conf(fab, node_gres).splitlines()]
    return files, lines


def _gres_conf(fab: Fabric, device_dir: str, site: SiteGres | None) -> str:
    """fabric's GPU lines, then the lines kept of the site's gres.conf (with its global AutoDetect)."""
    from fabric_hpc.topology import export

    autodetect = (site.autodetect if site else None) or "off"
    text = export.gres_conf(fab, device_dir=device_dir, autodetect=autodetect)
    return text + ("\n".join([KEPT_HEADER, *site.kept]) + "\n" if site and site.kept else "")


def _max_gpus_per_node(cfg: DeployConfig, fab: Fabric) -> int:
    """job_submit.lua's bound on a job's GPUs per node: the install's, else the model's largest host."""
    largest = max(fab.spec.host_types[t].gpus for t in set(fab.host_type_of.values()))
    gpus = cfg.install.max_gpus_per_node or largest
    if gpus < 1:
        raise ConfigError(f"fabric model {fab.name!r} has no GPUs: nothing for the agent to place",
                          hint="give the cluster's model (--topology FILE); `discover` sees only this host")
    if gpus > MAX_GPUS_PER_NODE[1]:
        raise ConfigError(f"fabric model {fab.name!r} has hosts of {gpus} GPUs; job_submit.lua's "
                          f"max_gpus_per_node must be in {MAX_GPUS_PER_NODE[0]}..{MAX_GPUS_PER_NODE[1]}",
                          hint=f"set install.max_gpus_per_node (at most {MAX_GPUS_PER_NODE[1]})")
    return gpus


def _one_file_per_path(files: list[Planned]) -> None:
    """ConfigError when two planned files share a path: the second would overwrite the first, and
    every rerun would write both again."""
    seen: dict[str, Planned] = {}
    for f in files:
        first = seen.setdefault(os.path.normpath(f.path), f)
        if first is not f:
            names = " and ".join(x.what or Path(x.path).name for x in (first, f))
            raise ConfigError(f"install would write {f.path} twice: {names}",
                              hint="give install.slurm_conf_dir and install.config_dir different "
                                   "directories, or set install.topology_format = \"conf\"")


def _scripts(cfg: DeployConfig) -> dict[str, Planned]:
    """The Python scripts Slurm runs (TaskProlog, and the Prolog where this fabric-hpc has one), by
    slurm.conf key."""
    from importlib import resources

    from fabric_hpc.slurm.plugins import PLUGIN_PACKAGE, SCRIPTS, render_script

    cd, out = Path(cfg.install.config_dir), {}
    for name, key in SCRIPTS.items():
        if resources.files(PLUGIN_PACKAGE).joinpath(name).is_file():
            text = render_script(name, config=str(cd / "prolog.json"), python=cfg.install.python)
            shebang, _, body = text.partition("\n")
            out[key] = Planned(str(cd / name), f"{shebang}\n{_header('#')}{body}", 0o755)
    return out


def _topology_yaml(fmt: str, slurm_version: str | None) -> bool:
    """Whether to write topology.yaml (Slurm >= 25.05 reads it) rather than topology.conf."""
    if fmt != "auto":
        return fmt == "yaml"
    return slurm_version is not None and version_tuple(slurm_version) >= (25, 5)


#: The first Slurm that has topology/block, and the first that reads topology.yaml
#: (Slurm's CHANGELOG/slurm-23.11.md and slurm-25.05.md; 22.05 and 23.02 have no topology_block.so).
YAML_SINCE = (25, 5)


def _conf_line(key: str, path: str) -> str:
    """``key=path`` for slurm.conf: a path with ``#`` (slurm.conf cuts the line there), whitespace or
    ``"`` would not reach Slurm as written: ConfigError (nothing written)."""
    bad = sorted({c for c in path if c in '#"' or c.isspace()})
    if bad:
        raise ConfigError(f"{key}={path}: slurm.conf cannot hold this path (it has "
                          f"{', '.join(map(repr, bad))}: slurm.conf cuts a line at '#' and splits values "
                          "at spaces and quotes)",
                          hint="set install.config_dir to a path without '#', spaces or '\"'")
    return f"{key}={path}"


#: The oldest Slurm fabric supports (README: 22.05 and 25.11 tested, 26.05 ran once).
OLDEST_SLURM = (22, 5)


def _check_slurm_supports(plugin: str, use_yaml: bool, slurm_version: str | None) -> None:
    """ConfigError (before anything is written) when the Slurm that will read the files has no
    topology/block (slurmctld is fatal: "Couldn't find the specified plugin name for topology/block")
    or does not read topology.yaml (it would run with no topology at all, silently)."""
    if slurm_version is None:
        return
    have = version_tuple(slurm_version)
    if have < OLDEST_SLURM:
        raise ConfigError(f"Slurm {slurm_version} is older than fabric supports: 22.05 to 26.05 (22.05 "
                          "and 25.11 tested; README.md)",
                          hint="upgrade Slurm to 22.05 or newer, or set install.slurm_version if the "
                               "cluster runs another")
    if use_yaml and have < YAML_SINCE:
        raise ConfigError(f"install.topology_format = \"yaml\" needs Slurm 25.05 or newer; this Slurm "
                          f"is {slurm_version}, which never reads topology.yaml (it would run without a "
                          "topology)", hint="set install.topology_format = \"conf\" (or \"auto\"), or "
                                            "install.slurm_version if the cluster runs another Slurm")
    if plugin == "block" and have < BLOCK_SINCE:
        raise ConfigError(f"install.topology_plugin = \"block\" needs Slurm 23.11 or newer; this Slurm is "
                          f"{slurm_version}, which has no topology/block (slurmctld would not start: "
                          "\"Couldn't find the specified plugin name for topology/block\")",
                          hint="set install.topology_plugin = \"tree\", or upgrade Slurm to 23.11+")


def version_tuple(text: str, source: str = "install.slurm_version") -> tuple[int, int]:
    """(major, minor) of a Slurm version (``25.11``, ``23.11.11``, ``24.05.8-1``, ``slurm 25.11.7``); a
    ConfigError naming ``source`` for anything else (``24`` alone: which 24 release reads the files matters,
    e.g. 24.05 and 24.11 differ)."""
    words = text.split()
    m = re.match(r"(\d{1,4})\.(\d{1,2})(?![0-9])", words[-1]) if words else None
    if m is None:
        raise ConfigError(f"cannot read Slurm version {text[:40]!r}: give its release as major.minor",
                          hint=f"e.g. {source} 25.11 or 23.11.11 (`scontrol --version` prints it)")
    return int(m[1]), int(m[2])


def detect_slurm_version(env: dict[str, str] | None = None) -> str | None:
    """``scontrol --version`` (``slurm 25.11.7`` → ``25.11.7``); None when scontrol is not there."""
    try:
        out = run_child(["scontrol", "--version"], SCONTROL_TIMEOUT_S, env=env)
    except (ChildNotStarted, ChildTimeout):
        return None
    return out.stdout.split()[-1] if out.returncode == 0 and out.stdout.split() else None
