"""``fabric slurm``: read a Slurm cluster through fabric's client, explain jobs, configure the plugin."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.cli.params import FiniteFloat, InputFile, OutputDir, OutputFile
from fabric_hpc.slurm.limits import FALLBACK_S, MAX_GPUS_PER_NODE

_backend = click.option("--backend", type=click.Choice(["cli", "rest", "pyslurm"]), default="cli", show_default=True,
                        help="How to talk to Slurm.")
_rest_url = click.option("--rest-url", default=None, help="slurmrestd address for --backend rest "
                         "(unix:/path or http://127.0.0.1:6820).")


@click.group("slurm")
def group() -> None:
    """Slurm: jobs and nodes as fabric sees them, why a job waits, report; install, uninstall,
    plugin-config, topo-files, jobscripts (the job_submit plugin, TaskProlog, job scripts)."""


def _client(backend: str, rest_url: str | None) -> Any:
    from fabric_hpc.slurm import open_client

    return open_client(backend, url=rest_url, cli_words=True)


def _job_id(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A plain job id; an array task (``12_3``) or het component (``12+1``) is refused with what to do
    (click's int read ``1_3`` as 13: another job)."""
    text = value.strip()
    if re.fullmatch(r"\d+[_+]\S*", text):
        kind = "an array task" if "_" in text else "a heterogeneous job's component"
        raise click.BadParameter(
            f"{value!r} names {kind}: fabric places no job arrays or heterogeneous jobs, so it has "
            f"nothing to explain about it; ask Slurm: scontrol show job {text} (its own JobId= line gives the plain id)",
            ctx=ctx, param=param)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) < 2**32:
        raise click.BadParameter(f"{value!r} is not a job id (a whole number, e.g. 1234)",
                                 ctx=ctx, param=param)
    return int(text)


@group.command("why")
@click.argument("job_id", callback=_job_id)
@click.option("--state-dir", default=None,
              help="The agent's state directory (its decision log explains placements) "
                   "[default: /var/lib/fabric-agent].")
@_backend
@_rest_url
@json_option
def why(job_id: int, state_dir: str | None, backend: str, rest_url: str | None, as_json: bool) -> None:
    """Explain in plain words why JOB_ID is pending, or why it runs where it runs."""
    from fabric_hpc.slurm.why import explain

    if state_dir is not None:
        _agent_state_dir(state_dir)
    out = explain(_client(backend, rest_url), job_id, state_dir=state_dir or "/var/lib/fabric-agent")
    render(as_json, out, lambda con: con.print(out["text"]))


def _agent_state_dir(state_dir: str) -> None:
    """NotFoundError unless ``state_dir`` is an agent's state directory (a decision log or a status file
    in it): a wrong --state-dir would make every placement look like Slurm's own."""
    from fabric_hpc.errors import NotFoundError

    hint = ("--state-dir: the agent's state directory (agent.state_dir of its config; fabric agent status "
            "--state-dir DIR checks it)")
    base = Path(state_dir)
    try:
        if not base.is_dir():
            raise NotFoundError(f"--state-dir {state_dir}: no such directory", hint=hint)
        if not any((base / name).is_file() for name in ("decisions.jsonl", "status.json", "heartbeat")):
            raise NotFoundError(f"--state-dir {state_dir} is not a fabric agent's state directory: no "
                                "decisions.jsonl, status.json or heartbeat in it", hint=hint)
    except PermissionError:
        return  # the service user's directory: explain() says the log is unreadable


@group.command("jobs")
@_backend
@_rest_url
@json_option
def jobs(backend: str, rest_url: str | None, as_json: bool) -> None:
    """Jobs Slurm knows, with GPUs per node and fabric marking."""
    from fabric_hpc.hostlist import compress

    js = _client(backend, rest_url).jobs()
    data = [{"job": j.job_id, "state": j.state, "reason": j.reason, "nodes": j.nodes, "gpus_per_node": j.gpus_per_node,
             "fabric": j.fabric_marked, "node_list": list(j.node_list), "req_nodes": list(j.req_nodes)} for j in js]
    render(as_json, data, lambda con: con.print(table("Slurm jobs", ["job", "state", "reason", "N", "GPUs/N", "fabric",
                                                                    "nodes"],
        [[d["job"], d["state"], d["reason"], d["nodes"], d["gpus_per_node"], "yes" if d["fabric"] else "",
          compress(d["node_list"] or d["req_nodes"]) if (d["node_list"] or d["req_nodes"]) else ""] for d in data])))


@group.command("nodes")
@_backend
@_rest_url
@json_option
def nodes(backend: str, rest_url: str | None, as_json: bool) -> None:
    """Nodes with their state (and Slurm's state flags: idle+drain) and allocated GPU indices."""
    ns = _client(backend, rest_url).nodes()
    data = [{"node": n.name, "state": n.state, "flags": [f.lower() for f in n.flags], "gpus": n.gpus,
             "gpus_used": list(n.gpus_used), "usable": n.usable} for n in ns]
    render(as_json, data, lambda con: con.print(table("Slurm nodes", ["node", "state", "GPUs", "used"],
        [[d["node"], "+".join([d["state"], *d["flags"]]), d["gpus"], ",".join(map(str, d["gpus_used"]))]
         for d in data])))


@group.command("plugin-config")
@click.option("--state-dir", default="/var/lib/fabric-agent", show_default=True)
@click.option("--fallback-s", type=click.IntRange(*FALLBACK_S), default=60, show_default=True,
              help="Seconds a deferred job waits for the agent before Slurm takes it.")
@click.option("--max-gpus-per-node", type=click.IntRange(*MAX_GPUS_PER_NODE), default=8, show_default=True)
@click.option("-o", "--output", type=OutputFile(what="output"), default=None,
              help="Write here (default: stdout).")
def plugin_config(state_dir: str, fallback_s: int, max_gpus_per_node: int, output: str | None) -> None:
    """Print job_submit.lua (shipped in the wheel) with these settings (install it next to slurm.conf)."""
    from fabric_hpc.slurm.plugins import cluster_path, render_job_submit

    text = render_job_submit(state_dir=cluster_path(state_dir, what="--state-dir"), fallback_s=fallback_s,
                             max_gpus_per_node=max_gpus_per_node)
    if output:
        from fabric_hpc.atomic import write_atomic
        from fabric_hpc.inputs import output_path

        write_atomic(output_path(output, what="--output"), text)  # slurmctld never reads half a plugin
    else:
        click.echo(text, nl=False)


@group.command("jobscripts")
@click.argument("directory", type=OutputDir())
@click.option("--force", is_flag=True, help="Overwrite a script of the same name that differs (kept as "
              "NAME.fabric-backup, as install does).")
@json_option
def jobscripts(directory: Path, force: bool, as_json: bool) -> None:
    """Copy the sbatch scripts (train_gang, infer_batch, ckpt_restore) shipped in the wheel into
    DIRECTORY (created when only it is missing); a different file of the same name is kept unless
    --force, which first copies it to NAME.fabric-backup."""
    import shlex
    import shutil
    from importlib import resources

    from fabric_hpc.atomic import write_atomic
    from fabric_hpc.errors import ConfigError, NotFoundError
    from fabric_hpc.inputs import os_error
    from fabric_hpc.slurm.manifest import BACKUP_SUFFIX, free_name

    shipped = resources.files("fabric_hpc").joinpath("jobscripts")
    scripts = sorted((f for f in shipped.iterdir() if f.name.endswith(".sbatch")) if shipped.is_dir() else (),
                     key=lambda f: f.name)
    if not scripts:
        raise NotFoundError("this fabric-hpc has no job scripts", hint="reinstall fabric-hpc from its wheel")
    try:
        directory.mkdir(exist_ok=True)  # a new directory in an existing one (OutputDir checked the parent)
    except OSError as exc:
        raise os_error(exc, "directory", directory) from None
    texts = {f.name: f.read_bytes() for f in scripts}
    clash = [n for n, data in texts.items() if (directory / n).exists() and (directory / n).read_bytes() != data]
    if clash and not force:
        raise ConfigError(f"{', '.join(clash)} in {directory} differ from this version's",
                          hint=f"--force overwrites them, keeping each as NAME{BACKUP_SUFFIX}")
    backups = {name: str(free_name(directory / (name + BACKUP_SUFFIX))) for name in clash}
    for name, backup in backups.items():
        shutil.copy2(directory / name, backup)
    written = [str(directory / name) if (directory / name).exists() and name not in clash else
               str(write_atomic(directory / name, data, mode=0o755)) for name, data in texts.items()]
    lines = [f"backup  {name} -> {backup}" for name, backup in backups.items()] + written
    render(as_json, {"dir": str(directory), "files": written, "backups": list(backups.values())},
           lambda con: con.print("\n".join(lines) + "\nsubmit with e.g. sbatch "
                                 + shlex.quote(str(directory / "train_gang.sbatch"))))


@group.command("topo-files")
@click.option("--topology", required=True, type=InputFile(what="fabric file"), help="The fabric model.")
@click.option("--dir", "topo_dir", default="/var/lib/fabric-hpc/nccl", show_default=True,
              help="The root-owned directory the TaskProlog reads (topo_dir of prolog.json).")
@click.option("--host", "hosts", multiple=True, help="Only this host (repeatable; default: every host).")
@json_option
def topo_files(topology: str, topo_dir: str, hosts: tuple[str, ...], as_json: bool) -> None:
    """Write each host's NCCL topology XML into TOPO_DIR (run as root at install, or let the
    Prolog that `fabric slurm install` writes, prolog.py, do it per node): the TaskProlog exports
    only files it trusts."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.hostlist import compress
    from fabric_hpc.slurm.prolog import NoTopologyFile, write_topo
    from fabric_hpc.topology import open_fabric

    fab = open_fabric(topology)  # a file or a generator reference, as every command takes
    unknown = [h for h in hosts if h not in fab.host_pos]
    if unknown:
        raise ConfigError(f"hosts {unknown[:5]} are not in the fabric model {fab.name!r}",
                          hint=f"--host takes the model's host names ({', '.join(list(fab.hosts)[:3])}, ...; "
                               f"fabric topology show {topology}), or leave it out for every host")
    paths, missing = [], {}
    for h in hosts or fab.hosts:  # every host that has usable facts gets its file, whatever the others lack
        try:
            paths.append(str(write_topo(fab, h, topo_dir)))
        except NoTopologyFile as exc:
            missing[h] = exc
    if missing:
        first = next(iter(missing.values()))
        raise ConfigError(f"{len(paths)} topology file(s) written in {topo_dir}; none for "
                          f"{len(missing)} host(s) {compress(sorted(missing))}: {first.message}",
                          hint=first.hint)
    render(as_json, {"dir": topo_dir, "files": paths}, lambda con: con.print(
        f"{len(paths)} topology file(s) in {topo_dir}" + ("" if os.geteuid() == 0 else
        " (not root: only jobs of this user will trust them)")))


@group.command("report")
@click.option("--topology", "topology", required=True, help="Fabric model of the cluster (YAML or generator).")
@click.option("--out", "out_html", default="cluster.html", show_default=True, help="HTML file to write.")
@click.option("--png", default=None, help="Also write a static PNG.")
@click.option("--state-dir", default=None, help="The agent's state directory: its audit log says who placed what.")
@click.option("--title", default=None)
@click.option("--watch", "watch_s", type=FiniteFloat(1.0), default=None,
              help="Rewrite the files every SECONDS (atomically) until SIGINT/SIGTERM.")
@_backend
@_rest_url
@json_option
def report(topology: str, out_html: str, png: str | None, state_dir: str | None, title: str | None,
           watch_s: float | None, backend: str, rest_url: str | None, as_json: bool) -> None:
    """The topology report of the live cluster: where every job runs on the fabric, and why."""
    from fabric_hpc.cli.output import console
    from fabric_hpc.inputs import distinct_outputs
    from fabric_hpc.slurm import report as rep
    from fabric_hpc.slurm.audit import AUDIT_LOG
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.topology.report import check_outputs

    agent_files = {} if state_dir is None else {f"--state-dir's {n}": Path(state_dir) / n
                                                 for n in (AUDIT_LOG, "status.json")}
    distinct_outputs({"--out": out_html, "--png": png}, {"--topology": topology, **agent_files})
    check_outputs(out_html, png)
    fab, client = open_fabric(topology), _client(backend, rest_url)

    def once() -> dict[str, Any]:
        return rep.write(client, fab, out_html, png=png, state_dir=state_dir, title=title)

    if watch_s is None:
        out = once()
        render(as_json, out, lambda con: con.print(rep.summary_line(out)))
        return

    def cycle() -> None:  # each cycle says what it wrote: a summary line, or one JSON line with --json
        out = once()
        click.echo(_json_line(out) if as_json else rep.summary_line(out))

    cycle()  # the first page (or the error) before the loop: a wrong flag fails at once
    err = console(stderr=True)
    rep.watch(cycle, watch_s, on_error=lambda exc: err.print(f"error: {exc.message} (keeping the last page)"),
              first_wait=True)


def _json_line(data: Any) -> str:
    import json

    from fabric_hpc.cli.output import JSON_WRITTEN, dumps_json

    JSON_WRITTEN[0] = True
    return json.dumps(json.loads(dumps_json(data)[0]), separators=(",", ":"))


_config = click.option("--config", "config_path", required=True,
                       type=InputFile(what="agent config file"),
                       help="Agent config file (TOML or YAML; docs/deploy.md lists every key).")
_root = click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
                     help="Prefix for every path written (a staging tree or a test directory).")


def _fabric(ref: str) -> Any:
    """A fabric model from a file, a generator reference, or ``discover`` (this host, NVML + sysfs)."""
    from fabric_hpc.topology import Fabric, open_fabric

    if ref == "discover":
        from fabric_hpc.topology import discover

        return Fabric(discover().spec, source="discover")
    return open_fabric(ref)


@group.command("install")
@_config
@click.option("--topology", default=None, help="Fabric model (file, generator reference or 'discover'); "
              "default: the config's agent.topology.")
@_root
@click.option("--dry-run", is_flag=True,
              help="Print a unified diff against what is installed; write nothing; exit 3 where the real run "
                   "would refuse.")
@click.option("--force", is_flag=True, help="Overwrite files install did not write (each kept as .fabric-backup).")
def install(config_path: str, topology: str | None, root: str, dry_run: bool, force: bool) -> None:
    """Write job_submit.lua, the TaskProlog, topology/gres.conf, the state dir and the agent's systemd unit.

    slurm.conf is never edited: the lines to add are printed at the end.
    """
    from fabric_hpc.slurm.deploy_config import load_config, with_service_user
    from fabric_hpc.slurm.install import Installer, detect_slurm_version, plan
    from fabric_hpc.slurm.rest_token import rest_token_note

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.site_gres import gpu_files, read_site_gres
    from fabric_hpc.slurm.slurm_settings import plugins, site_node_gres, site_settings

    from fabric_hpc.slurm.install_checks import check_private_tmp, check_python, check_slurm_conf_dir

    cfg = with_service_user(load_config(config_path)[0])
    check_private_tmp(cfg, root)
    settings, source = site_settings(cfg, Path(root))
    running = settings if source == "scontrol show config" else None
    for warning in [*check_python(cfg.install.python, root), *check_slurm_conf_dir(cfg, running, os.environ)]:
        click.echo(f"warning: {warning}", err=True)
    fab = _fabric(topology or cfg.agent.topology)
    inst = Installer(cfg, root=root)
    gres_conf = str(Path(cfg.install.slurm_conf_dir) / "gres.conf")
    site_gres = read_site_gres(inst.at(gres_conf), gres_conf, fab.hosts, root=inst.root,
                               gpu_files=gpu_files(fab, cfg.install.gres_device_dir))
    files, lines = plan(cfg, fab, slurm_version=cfg.install.slurm_version or detect_slurm_version(),
                        job_submit_plugins=settings.get("JobSubmitPlugins"),
                        gres_types=settings.get("GresTypes"), node_gres=site_node_gres(cfg, Path(root)),
                        site_gres=site_gres)
    refusals: list[str] = []
    if dry_run:
        click.echo(inst.diff(files) or "(nothing would change)\n", nl=False)
        for problem in inst.foreign(files):
            click.echo(f"would back up (--force): {problem}" if force else
                       f"would refuse without --force: {problem}")
            refusals += [] if force else [problem]
        for problem in inst.owner_problems():
            click.echo(f"would fail: {problem}")
            refusals.append(problem)
    else:
        for action in inst.install(files, force=force):
            click.echo(action)
    for line in site_gres.summary() if site_gres else []:
        click.echo(line)
    click.echo("\nAdd to slurm.conf (fabric never edits it), then `scontrol reconfigure`:")
    for line in lines:
        click.echo(f"  {line}")
    if current := settings.get("JobSubmitPlugins"):
        click.echo(f"  (JobSubmitPlugins is {current} now ({source}): " + (
            "lua is in it already)" if "lua" in plugins(current) else
            "replace that line, wherever slurm.conf or an Included file sets it; the site's plugins stay)"))
    if cfg.agent.backend == "rest":
        click.echo("\n" + rest_token_note(cfg))
    if refusals:
        raise ConfigError(f"install would not run: {len(refusals)} problem(s) above (nothing was written)",
                          hint="fix them, or pass --force for files install did not write")
    if not dry_run:
        click.echo("\nStart the agent: systemctl daemon-reload && systemctl enable --now fabric-agent\n"
                   f"Check it:        fabric agent check --config {cfg.install.config_dir}/agent.toml")


@group.command("uninstall")
@_config
@_root
@click.option("--force", is_flag=True, help="Also remove files changed since install, and files the running "
              "slurmctld still names (Prolog=, TaskProlog=, JobSubmitPlugins=lua).")
@click.option("--purge-state", is_flag=True, help="Also remove the agent's files in the state directory "
              "(its decision log), and the directory when nothing else is in it.")
def uninstall(config_path: str, root: str, force: bool, purge_state: bool) -> None:
    """Remove exactly what `fabric slurm install` wrote (its manifest in config_dir), restoring backups.

    First remove fabric's lines from slurm.conf and run `scontrol reconfigure`: while the running
    slurmctld (scontrol show config, with --root /) still names a file uninstall would remove, it
    refuses (exit 3) unless --force.
    """
    from fabric_hpc.slurm.deploy_config import load_config, with_service_user
    from fabric_hpc.slurm.install import Installer
    from fabric_hpc.slurm.slurm_settings import site_settings

    cfg = with_service_user(load_config(config_path)[0])
    settings, source = site_settings(cfg, Path(root))
    running = settings if source == "scontrol show config" else None
    for action in Installer(cfg, root=root).uninstall(force=force, purge_state=purge_state, running=running):
        click.echo(action)
    if running is not None and not force:
        click.echo("The running slurmctld (scontrol show config) names none of the removed files.")
    else:
        click.echo("slurmctld was not checked" + (" (--force)" if force and running is not None else
                   " (--root is not / or scontrol did not answer)") + ": slurm.conf must no longer name "
                   "the removed files (Prolog=, TaskProlog=, lua in JobSubmitPlugins unless the site's "
                   "job_submit.lua was restored); remove those lines and run `scontrol reconfigure` now, "
                   "before the next job starts (docs/deploy.md §6).")
