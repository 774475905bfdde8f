"""``fabric topology``: generate, import, discover, validate, show, export and report fabrics.

Every command that takes a fabric accepts a YAML path or a generator reference such as
``superpod:sus=4`` (see ``docs/topology.md``).
"""

from __future__ import annotations

import click
from rich.text import Text

from fabric_hpc.cli.main import one_line
from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.errors import ConfigError
from fabric_hpc import DEFAULT_FABRIC

FABRIC_HELP = f"Fabric YAML file or generator reference (default: {DEFAULT_FABRIC})."


@click.group()
def group() -> None:
    """Fabric model: generate, import, discover, assemble, validate, show, export, report."""


def _write_or_print(text: str, out: str | None) -> None:
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    from fabric_hpc.atomic import write_atomic
    from fabric_hpc.inputs import os_error, output_path

    path = output_path(out, what="--out")
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise os_error(exc, "--out", path) from None
    click.echo(one_line(f"wrote {path}"), err=True)


def _emit_spec(spec, out: str | None) -> None:
    from fabric_hpc.topology import dump_spec, save_spec

    if out and out != "-":
        click.echo(one_line(f"wrote {save_spec(spec, out)}"), err=True)
    else:
        click.echo(dump_spec(spec), nl=False)


# -- generate ----------------------------------------------------------------------------------
@group.group("generate")
def generate() -> None:
    """Generate a reference fabric description (YAML)."""


_out = click.option("-o", "--out", default=None, help="Output file (default: stdout).")


@generate.command("superpod")
@click.option("--sus", default=4, show_default=True, type=click.IntRange(1, 256), help="Scalable units (32 hosts).")
@click.option("--hosts-per-su", default=32, show_default=True, type=click.IntRange(1, 64))
@click.option("--sus-per-spine-group", default=4, show_default=True, type=click.IntRange(1, 64),
              help="SUs under one spine group (more SUs than this add a core level).")
@_out
def gen_superpod(sus: int, hosts_per_su: int, sus_per_spine_group: int, out: str | None) -> None:
    """DGX H100 SuperPOD: rail-optimised SUs of 32 hosts, spine (and core above 4 SUs)."""
    from fabric_hpc.topology import generators

    _emit_spec(generators.superpod(sus, hosts_per_su=hosts_per_su,
                                   sus_per_spine_group=sus_per_spine_group), out)


@generate.command("nvl72")
@click.option("--racks", default=8, show_default=True, type=click.IntRange(1, 512))
@click.option("--racks-per-su", default=8, show_default=True, type=click.IntRange(1, 512),
              help="Racks under one leaf group (scalable unit).")
@_out
def gen_nvl72(racks: int, racks_per_su: int, out: str | None) -> None:
    """GB200 NVL72 racks: 18 hosts × 4 GPUs per rack-wide NVLink domain."""
    from fabric_hpc.topology import generators

    _emit_spec(generators.nvl72(racks, racks_per_su=racks_per_su), out)


@generate.command("fat-tree")
@click.option("--k", "k", default=8, show_default=True, type=click.IntRange(2, 64), help="Switch radix (even).")
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(0, 64), help="GPUs per host.")
@click.option("--nic-gbps", default=50.0, show_default=True,  # generators.NIC_400G_GBPS
              type=click.FloatRange(0, 100_000, min_open=True), help="Each host's NIC bandwidth (GB/s).")
@_out
def gen_fat_tree(k: int, gpus: int, nic_gbps: float, out: str | None) -> None:
    """A k-ary fat tree (k³/4 hosts), full bisection."""
    from fabric_hpc.topology import generators

    _emit_spec(generators.fat_tree(k, gpus_per_host=gpus, nic_gbps=nic_gbps), out)


@generate.command("leaf-spine")
@click.option("--hosts", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--hosts-per-leaf", default=None, type=click.IntRange(1, 4096),
              help="Hosts under each leaf switch (default 4, or all hosts when there are fewer).")
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(0, 64))
@click.option("--cpus", default=8, show_default=True, type=click.IntRange(2, 4096),
              help="CPUs per host (even).")
@click.option("--memory-gb", default=16.0, show_default=True,
              type=click.FloatRange(0, 1_000_000, min_open=True), help="Memory per host (GB).")
@click.option("--prefix", default="n", show_default=True)
@_out
def gen_leaf_spine(hosts: int, hosts_per_leaf: int, gpus: int, cpus: int, memory_gb: float, prefix: str,
                   out: str | None) -> None:
    """A small leaf/spine tree with hosts n1..nN (the live Slurm test cluster's shape)."""
    from fabric_hpc.topology import generators

    _emit_spec(generators.leaf_spine(hosts, hosts_per_leaf=hosts_per_leaf, gpus=gpus, cpus=cpus,
                                     memory_gb=memory_gb, prefix=prefix), out)


# -- validate / show -----------------------------------------------------------------------------
@group.command("validate")
@click.argument("fabrics", nargs=-1, required=True)
@json_option
def validate(fabrics: tuple[str, ...], as_json: bool) -> None:
    """Check every fabric file fail-closed; exit 3 when any is bad, naming file, line and fix."""
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.errors import FabricError
    results, errors = [], []
    for ref in fabrics:
        try:
            fab = open_fabric(ref)
            s = fab.summary()
        except FabricError as exc:
            errors.append(exc)
            results.append({"fabric": ref, "ok": False, "error": exc.message, "hint": exc.hint})
            continue
        results.append({"fabric": ref, "ok": True, "hosts": s["hosts"], "gpus": s["gpus"]})
        if warnings := _idle_switch_warnings(ref, fab) + _nic_speed_warnings(ref, fab):
            results[-1]["warnings"] = warnings
            for w in warnings:  # on stderr: --json stays one document
                click.echo(one_line(f"warning: {w}"), err=True)

    def human(c) -> None:
        c.print(table(None, ["fabric", "status", "hosts", "gpus"],
                      [(r["fabric"], "ok" if r["ok"] else "invalid", r.get("hosts", "-"), r.get("gpus", "-"))
                       for r in results]))
        for exc in errors[:-1]:  # the last one is printed by the CLI's error handler, below
            c.print(str(exc), markup=False)
    render(as_json, results, human)
    if errors:  # exit code of the first
        last = errors[-1]
        raise type(errors[0])(last.message if len(errors) == 1 else
                              f"{len(errors)} of {len(fabrics)} fabric files are invalid; the last: {last.message}",
                              hint=last.hint)


def _idle_switch_warnings(ref: str, fab) -> list[str]:
    """A leaf group with more switches than its hosts have NICs: the extra switches carry nothing."""
    out = []
    for name, idle in fab.idle_switches().items():
        total = len(fab.groups[name].switches)
        used = total - idle
        out.append(f"{ref}: leaf group '{name}': {idle} of its {total} switches have no NIC cabled to them "
                   f"(its hosts have at most {used} NICs, NIC n goes to switch n mod {total}), so they add "
                   f"nothing to its uplink bandwidth; fix: switches: {used}, or more NICs per host")
    return out


def _nic_speed_warnings(ref: str, fab) -> list[str]:
    """A NIC faster than any made: most likely its Gb/s written where the format takes GB/s."""
    from fabric_hpc.topology.spec import FASTEST_NIC_GBPS

    return [f"{ref}: host type '{name}': nic_gbps: {ht.nic_gbps:g} is GB/s per NIC "
            f"({ht.nic_gbps * 8:,g} Gb/s), faster than any NIC ({FASTEST_NIC_GBPS * 8:,} Gb/s is "
            f"{FASTEST_NIC_GBPS}); nic_gbps is bytes, not bits: if the NIC is {ht.nic_gbps:g} Gb/s, "
            f"fix: nic_gbps: {ht.nic_gbps / 8:g}"
            for name, ht in fab.spec.host_types.items() if ht.nics and ht.nic_gbps > FASTEST_NIC_GBPS]


@group.command("show")
@click.argument("fabric", required=False)
@click.option("--host", default=None, help="Show one host: GPUs, NUMA, rails, domains.")
@click.option("--distance", nargs=2, default=None, metavar="GPU_A GPU_B", help="Hops/bandwidth between GPUs.")
@json_option
def show(fabric: str | None, host: str | None, distance: tuple[str, str] | None, as_json: bool) -> None:
    """Summarise a fabric, one host, or the distance between two GPUs."""
    from fabric_hpc.topology import open_fabric

    if distance and host:
        raise ConfigError("--distance and --host show different things; give one of them",
                          hint="--host H for one host's GPUs, or --distance H/gpuA H/gpuB between two GPUs")
    fab = open_fabric(fabric)
    if distance:
        d = fab.distance(*distance)
        data = {"a": distance[0], "b": distance[1], "hops": d.hops, "bandwidth_gbps": d.bandwidth_gbps,
                "latency_us": round(d.latency_us, 3), "level": d.level}
        render(as_json, data, lambda c: c.print(table(None, list(data), [list(data.values())])))
        return
    if host:
        gpus = [fab.gpu(g) for g in fab.host_gpus(host)]
        data = {"host": host, "type": fab.host_type_of[host], "domains": fab.domains(host),
                "gpus": [g.__dict__ for g in gpus]}

        def human(c):  # the header wraps at the terminal's width (a long host name folds)
            c.print(Text(host, style="bold") + Text(f" type={data['type']}  domains: "
                    + " < ".join(f"{lv}:{name}" for lv, name in data["domains"])), soft_wrap=False,
                    overflow="fold")
            if not gpus:
                c.print("no GPUs")
                return
            c.print(table(None, ["gpu", "model", "numa", "rail", "nvlink domain"],
                          [(g.id, g.model, g.numa, g.rail, g.nvlink_domain or "none (PCIe only)")
                           for g in gpus]))
        render(as_json, data, human)
        return
    from fabric_hpc.topology.report import plural

    s = fab.summary()

    def human_summary(c):
        pcie = s["pcie_only_hosts"]
        c.print(Text(s["name"], style="bold") + Text(
            f": {plural(s['hosts'], 'host')}, {plural(s['gpus'], 'GPU')}, "
            f"{plural(s['nvlink_domains'], 'NVLink domain')}"
            + (f" ({plural(pcie, 'host')} with PCIe-only GPUs, in none)" if pcie else "") + ", "
            + (f"levels {' < '.join(s['levels'])}" if s["levels"]
               else "no network (one non-blocking switch)")))
        if s["groups_per_level"]:
            c.print(table(None, ["level", "groups"], list(s["groups_per_level"].items())))
        kinds = [("nvldomain (multi-host)" if k == "nvldomain" else k, n) for k, n in s["vertices"].items()]
        c.print(table(None, ["vertex kind", "count"], kinds))
        if s["gpu_models"]:
            c.print(table(None, ["GPU model", "GPUs"], list(s["gpu_models"].items())))
        else:
            c.print("no GPUs")
    render(as_json, s, human_summary)


# -- export ---------------------------------------------------------------------------------------
EXPORTS = ("topology-tree", "topology-block", "topology-yaml", "slurm-nodes", "gres", "nccl-xml")
#: The export options and the formats that read them: any other format given one is a usage error
#: (exit 2), never an option silently ignored.
_EXPORT_OPTION_FORMATS = {"host": ("nccl-xml",), "facts": ("nccl-xml",), "device_dir": ("gres",),
                          "block_size": ("topology-block", "topology-yaml"),
                          "slurm_version": ("topology-block",),
                          "default_topology": ("topology-yaml",)}


def _refuse_unread_options(fmt: str) -> None:
    """click.UsageError when an option given on the command line is one ``fmt`` does not read."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    for name, formats in _EXPORT_OPTION_FORMATS.items():
        if fmt not in formats and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} is for --format {' or '.join(formats)}, not {fmt}: "
                                   f"--format {fmt} would ignore it")


@group.command("export")
@click.argument("fabric", required=False)
@click.option("--format", "fmt", type=click.Choice(EXPORTS), required=True, help="What to write.")
@click.option("--host", default=None, help="Host for nccl-xml.")
@click.option("--facts", default=None, help="nccl-xml: the host's discovery sidecar (<host>.facts.json of "
              "`fabric topology discover`): its real PCI bus ids. Without it the XML is the model's only.")
@click.option("--device-dir", default="/dev", show_default=True, help="Where gres.conf finds nvidiaN.")
@click.option("--block-size", type=click.IntRange(1, 1 << 20), default=None,
              help="Base block size for topology/block (default: the size of the blocks, if all equal).")
@click.option("--slurm-version", default=None, help="topology-block: the Slurm that reads it, e.g. 23.11 "
              "(BlockLevels, blocks of one size; default: 24.05 or newer, BlockSizes).")
@click.option("--default-topology", type=click.Choice(["tree", "block", "flat"]), default="tree",
              show_default=True, help="topology-yaml: the cluster_default topology.")
@_out
def export(fabric: str | None, fmt: str, host: str | None, facts: str | None, device_dir: str,
           block_size: int | None, slurm_version: str | None, default_topology: str, out: str | None) -> None:
    """Write Slurm topology.conf (tree/block), topology.yaml (Slurm >= 25.05), slurm.conf node lines,
    gres.conf or NCCL XML."""
    from fabric_hpc.inputs import distinct_outputs
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.topology import export as ex

    _refuse_unread_options(fmt)
    # before reading: an --out that is the fabric would replace it
    distinct_outputs({"--out": None if out == "-" else out}, {"FABRIC": fabric})
    fab = open_fabric(fabric)
    if fmt == "nccl-xml":
        if not host:
            raise ConfigError("--format nccl-xml needs --host", hint=f"e.g. --host {fab.hosts[0]}")
        from fabric_hpc.topology.nccl_xml import nccl_topo_xml

        text = nccl_topo_xml(fab, host, _read_facts(facts) if facts else None)
        if not facts:
            click.echo(one_line(f"note: {host}'s XML has made-up PCI bus ids (no --facts): the model's "
                                "picture, not for NCCL_TOPO_FILE (NCCL would drop its GPUs and NVLinks)"),
                       err=True)
    elif fmt == "topology-yaml":
        from fabric_hpc.topology.export_yaml import topology_yaml

        text = topology_yaml(fab, default=default_topology, block_size=block_size)
    elif fmt.startswith("topology-"):
        from fabric_hpc.slurm.install_plan import version_tuple

        text = ex.topology_conf(fab, fmt.split("-", 1)[1], block_size=block_size,
                                slurm_version=None if slurm_version is None
                                else version_tuple(slurm_version, "--slurm-version"))
    elif fmt == "slurm-nodes":
        text = ex.slurm_nodes_conf(fab)
    else:
        text = ex.gres_conf(fab, device_dir=ex.check_device_dir(device_dir))
    wrote_blocks = fmt == "topology-block" or (fmt == "topology-yaml" and "\n# block: left out" not in text)
    if wrote_blocks and fab.spec.nvlink_domains and (note := ex.outside_blocks_note(fab)):
        click.echo(one_line(f"note: {note}"), err=True)  # hosts in no block: what Slurm does with them
    _write_or_print(text, out)


def _read_facts(path: str) -> dict:
    from fabric_hpc.inputs import load_json, read_bytes

    data = load_json(read_bytes(path, what="--facts", limit=4 << 20), path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a discovery sidecar (a JSON object)",
                          hint="give the <host>.facts.json that `fabric topology discover -o` wrote")
    return data


# -- report ---------------------------------------------------------------------------------------
@group.command("report")
@click.argument("fabric", required=False)
@click.option("--out", "out_html", default="report.html", show_default=True, help="HTML file to write.")
@click.option("--state", "state_path", default=None, help="Cluster state JSON (jobs, down) to colour by.")
@click.option("--png", default=None, help="Also write a static PNG.")
@click.option("--svg", default=None, help="Also write a static SVG.")
@click.option("--title", default=None)
@json_option
def report(fabric: str | None, out_html: str, state_path: str | None, png: str | None, svg: str | None,
           title: str | None, as_json: bool) -> None:
    """Write a self-contained HTML report (and PNG/SVG) of the fabric and the jobs on it."""
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.inputs import distinct_outputs
    from fabric_hpc.topology.report import write_report

    distinct_outputs({"--out": out_html, "--png": png, "--svg": svg}, {"FABRIC": fabric, "--state": state_path})
    fab = open_fabric(fabric)
    state = None
    if state_path is not None:  # passed as a state, not strings: a job named "free" stays a job
        from fabric_hpc.placement import ClusterState

        state = ClusterState.load(fab, state_path)
        for note in state.notes:  # on stderr: --json stays one document
            click.echo(one_line(f"note: {note}"), err=True)
    summary = write_report(fab, out_html, state=state, title=title, png=png, svg=svg)
    data = summary.to_dict()
    from fabric_hpc.topology.report import plural

    render(as_json, data, lambda c: c.print(
        f"wrote {data['html']} ({data['html_bytes'] / 1024:,.0f} KiB): {plural(data['hosts'], 'host')}, "
        f"{plural(data['gpus'], 'GPU')}, {data['free']:,} free, {data['allocated']:,} allocated, "
        f"{data['down']:,} down, "
        f"{plural(len(data['jobs']), 'job')}"
        + "".join(f"; wrote {p}" for p in (data.get("png"), data.get("svg")) if p)))


# -- import / discover ----------------------------------------------------------------------------
#: importers.KINDS, written out: importing importers here would slow every `fabric` command's start.
IMPORT_KINDS = ("lingjun", "openb", "spot2026", "topology-conf", "topology-yaml", "ibnetdiscover")


@group.command("import")
@click.argument("csv_path", metavar="FILE")
@click.option("--kind", type=click.Choice(["auto", *IMPORT_KINDS]), default="auto", show_default=True,
              help="Data set (auto: from the content: a CSV header, SwitchName= lines of Slurm's "
                   "topology.conf, '- topology:' of its topology.yaml, Switch blocks of ibnetdiscover).")
@click.option("--hosts-per-leaf", type=click.IntRange(1, 100_000), default=None,
              help="Node lists only: put hosts under flat leaf switches of this size.")
@click.option("--host-map", default=None, help="Lingjun only: write the host-name → ip-hash CSV here.")
@click.option("--host-type", default=None, help="Slurm topology files and ibnetdiscover only: what is in "
              "each host: dgx-h100 (default; for ibnetdiscover with the NIC count and rate the dump "
              "shows cabled), gb200-tray, hgx-h800, a YAML file of a host type, or FABRIC.yaml[:TYPE].")
@click.option("--node-name-map", default=None, help="ibnetdiscover only: host names by GUID, in "
              "ibnetdiscover's --node-name-map format (0x<node GUID> \"<host> <hca>\"), for HCAs whose "
              "description names no host.")
@click.option("--assume-nonblocking", is_flag=True, help="ibnetdiscover only: uplinks non-blocking (each "
              "group's: the hosts' NIC bandwidth below it) instead of the link rates of the cables up.")
@_out
def import_(csv_path: str, kind: str, hosts_per_leaf: int | None, host_map: str | None,
            host_type: str | None, node_name_map: str | None, assume_nonblocking: bool,
            out: str | None) -> None:
    """Import real cluster data (Slurm topology.conf/topology.yaml, ibnetdiscover output, Alibaba
    Lingjun Clos, Alibaba node lists) as a fabric file."""
    from fabric_hpc.inputs import distinct_outputs
    from fabric_hpc.topology.importers import detect_kind, import_csv, load_csv

    distinct_outputs({"--out": out, "--host-map": host_map}, {"FILE": csv_path})
    csv_file = load_csv(csv_path)  # read once, size checked first
    real_kind = detect_kind(csv_file) if kind == "auto" else kind
    options: dict = {}
    for flag, value, kinds, key in (
            ("--hosts-per-leaf", hosts_per_leaf, ("openb", "spot2026"), "hosts_per_leaf"),
            ("--host-map", host_map, ("lingjun",), "hostmap_path"),
            ("--host-type", host_type, IMPORT_KINDS[3:], "host_type"),
            ("--node-name-map", node_name_map, ("ibnetdiscover",), "node_name_map"),
            ("--assume-nonblocking", assume_nonblocking or None, ("ibnetdiscover",), "assume_nonblocking")):
        if value is not None:
            if real_kind not in kinds:
                raise ConfigError(f"{flag} applies to {' and '.join(kinds)} files; {csv_path} is {real_kind}")
            options[key] = value
    _emit_spec(import_csv(csv_file, kind=real_kind, **options), out)


@group.command("assemble")
@click.argument("fragments", nargs=-1, required=True)
@click.option("--name", default="assembled", show_default=True, help="The fabric's name.")
@click.option("--network", default=None, metavar="FILE",
              help="The switches: Slurm's topology.conf or topology.yaml, or ibnetdiscover output (kind "
                   "detected as import's --kind auto); every discovered host must be in it, and it in them.")
@click.option("--allow-missing", is_flag=True,
              help="--network: leave the file's hosts that were not discovered out of the fabric (noted).")
@_out
def assemble_cmd(fragments: tuple[str, ...], name: str, network: str | None, allow_missing: bool,
                 out: str | None) -> None:
    """Join hosts' discovery fragments (HOST.yaml + HOST.facts.json) into one fabric; hosts whose GPUs
    share an NVML fabric clique (GB200/GB300 NVL72) form one multi-host NVLink domain; --network adds
    the switches of a topology.conf, topology.yaml or ibnetdiscover dump."""
    from fabric_hpc.inputs import distinct_outputs
    from fabric_hpc.topology.assemble import assemble
    from fabric_hpc.topology.assemble_network import WARNING, join_network

    if allow_missing and network is None:
        raise click.UsageError("--allow-missing is for --network: without a network file no host is "
                               "missing")
    distinct_outputs({"--out": None if out == "-" else out},
                     {**{f: f for f in fragments}, "--network": network})
    spec, notes = assemble(list(fragments), name=name)
    if network is not None:
        spec, more = join_network(spec, network, allow_missing=allow_missing)
        notes += more
    for note in notes:
        click.echo(one_line(note if note.startswith(WARNING) else f"note: {note}"), err=True)
    _emit_spec(spec, out)


@group.command("discover")
@click.option("-o", "--out", default=None, help="Write the host's YAML fragment here (and <stem>.facts.json).")
@click.option("--sysfs-root", default="/", show_default=True, help="Root of the sysfs tree to read.")
@click.option("--no-nvml", is_flag=True, help="Do not query NVML (sysfs only).")
@click.option("--record", default=None, help="Record the raw NVML answers to this JSON file (for fixtures).")
@click.option("--hostname", default=None,
              help="This host's name in the fragment (default: the system's host name, up to the first dot).")
@json_option
def discover_cmd(out: str | None, sysfs_root: str, no_nvml: bool, record: str | None, hostname: str | None,
                 as_json: bool) -> None:
    """Discover this host: GPUs and NVLink (NVML), CPUs, NUMA, HCAs and NICs (sysfs)."""
    from fabric_hpc.topology.discover import discover, facts_path, record_nvml, save_recording

    from fabric_hpc.inputs import distinct_outputs, output_path

    if out:  # checked before anything is discovered or recorded
        side = facts_path(out)
        output_path(out, what="--out")
        output_path(side, what="--out's facts file")
        distinct_outputs({"--out": out, "--out's facts file": side, "--record": record})
    if record:
        output_path(record, what="--record")
    found = discover(root=sysfs_root, use_nvml=not no_nvml, hostname=hostname)
    if record:  # after the discovery: a refused host writes nothing
        click.echo(one_line(f"wrote {save_recording(record_nvml(), record)}"), err=True)
    for note in found.notes:
        click.echo(one_line(f"note: {note}"), err=True)
    if out:
        paths = found.write(out)
        click.echo(one_line("wrote " + ", ".join(str(p) for p in paths if p)), err=True)
    elif as_json:
        from fabric_hpc.cli.output import print_json

        print_json({"spec": found.spec.model_dump(mode="json"), "facts": found.facts, "notes": found.notes})
    else:
        click.echo(found.yaml(), nl=False)
