"""``fabric topology``: generate, import, discover, validate, show, export and report fabrics.

Every command that takes a fabric accepts a YAML path or a generator reference such as
``superpod:sus=4`` (see ``docs/topology.md``).
"""

from __future__ import annotations

from pathlib import Path

import click

from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import dump_spec, generators, open_fabric, save_spec
from fabric_hpc.topology.io import DEFAULT_FABRIC

FABRIC_HELP = f"Fabric YAML file or generator reference (default: {DEFAULT_FABRIC})."


@click.group()
def group() -> None:
    """Fabric model: generate, import, discover, validate, show, export, report."""


def _write_or_print(text: str, out: str | None) -> None:
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}", err=True)


def _emit_spec(spec, out: str | None) -> None:
    if out and out != "-":
        click.echo(f"wrote {save_spec(spec, out)}", err=True)
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
@_out
def gen_superpod(sus: int, hosts_per_su: int, out: str | None) -> None:
    """DGX H100 SuperPOD: rail-optimised SUs of 32 hosts, spine (and core above 4 SUs)."""
    _emit_spec(generators.superpod(sus, hosts_per_su=hosts_per_su), out)


@generate.command("nvl72")
@click.option("--racks", default=8, show_default=True, type=click.IntRange(1, 512))
@_out
def gen_nvl72(racks: int, out: str | None) -> None:
    """GB200 NVL72 racks: 18 hosts × 4 GPUs per rack-wide NVLink domain."""
    _emit_spec(generators.nvl72(racks), out)


@generate.command("fat-tree")
@click.option("--k", "k", default=8, show_default=True, type=click.IntRange(2, 64), help="Switch radix (even).")
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(0, 64), help="GPUs per host.")
@_out
def gen_fat_tree(k: int, gpus: int, out: str | None) -> None:
    """A k-ary fat tree (k³/4 hosts), full bisection."""
    _emit_spec(generators.fat_tree(k, gpus_per_host=gpus), out)


@generate.command("leaf-spine")
@click.option("--hosts", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--hosts-per-leaf", default=4, show_default=True, type=click.IntRange(1, 4096))
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(0, 64))
@click.option("--prefix", default="n", show_default=True)
@_out
def gen_leaf_spine(hosts: int, hosts_per_leaf: int, gpus: int, prefix: str, out: str | None) -> None:
    """A small leaf/spine tree with hosts n1..nN (the live Slurm test cluster's shape)."""
    _emit_spec(generators.leaf_spine(hosts, hosts_per_leaf=hosts_per_leaf, gpus=gpus, prefix=prefix), out)


# -- validate / show -----------------------------------------------------------------------------
@group.command("validate")
@click.argument("fabrics", nargs=-1, required=True)
@json_option
def validate(fabrics: tuple[str, ...], as_json: bool) -> None:
    """Check fabric files fail-closed; exit 3 naming file, line and fix on the first bad one."""
    results = []
    for ref in fabrics:
        s = open_fabric(ref).summary()
        results.append({"fabric": ref, "ok": True, "hosts": s["hosts"], "gpus": s["gpus"]})
    render(as_json, results, lambda c: c.print(table(None, ["fabric", "status", "hosts", "gpus"],
                                                     [(r["fabric"], "ok", r["hosts"], r["gpus"]) for r in results])))


@group.command("show")
@click.argument("fabric", required=False)
@click.option("--host", default=None, help="Show one host: GPUs, NUMA, rails, domains.")
@click.option("--distance", nargs=2, default=None, metavar="GPU_A GPU_B", help="Hops/bandwidth between GPUs.")
@json_option
def show(fabric: str | None, host: str | None, distance: tuple[str, str] | None, as_json: bool) -> None:
    """Summarise a fabric, one host, or the distance between two GPUs."""
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

        def human(c):
            c.print(f"[bold]{host}[/] type={data['type']}  domains: "
                    + " < ".join(f"{lv}:{name}" for lv, name in data["domains"]))
            c.print(table(None, ["gpu", "model", "numa", "rail", "nvlink domain"],
                          [(g.id, g.model, g.numa, g.rail, g.nvlink_domain) for g in gpus]))
        render(as_json, data, human)
        return
    s = fab.summary()

    def human_summary(c):
        c.print(f"[bold]{s['name']}[/]: {s['hosts']} hosts, {s['gpus']} GPUs, levels {' < '.join(s['levels'])}")
        c.print(table(None, ["level", "groups"], list(s["groups_per_level"].items())))
        c.print(table(None, ["vertex kind", "count"], list(s["vertices"].items())))
        c.print(table(None, ["GPU model", "GPUs"], list(s["gpu_models"].items())))
    render(as_json, s, human_summary)


# -- export ---------------------------------------------------------------------------------------
EXPORTS = ("topology-tree", "topology-block", "slurm-nodes", "gres", "nccl-xml")


@group.command("export")
@click.argument("fabric", required=False)
@click.option("--format", "fmt", type=click.Choice(EXPORTS), required=True, help="What to write.")
@click.option("--host", default=None, help="Host for nccl-xml.")
@click.option("--device-dir", default="/dev", show_default=True, help="Where gres.conf finds nvidiaN.")
@_out
def export(fabric: str | None, fmt: str, host: str | None, device_dir: str, out: str | None) -> None:
    """Write Slurm topology.conf (tree/block), slurm.conf node lines, gres.conf or NCCL XML."""
    from fabric_hpc.topology import export as ex

    fab = open_fabric(fabric)
    if fmt == "nccl-xml":
        if not host:
            raise ConfigError("--format nccl-xml needs --host", hint=f"e.g. --host {fab.hosts[0]}")
        text = ex.nccl_topo_xml(fab, host)
    elif fmt.startswith("topology-"):
        text = ex.topology_conf(fab, fmt.split("-", 1)[1])
    elif fmt == "slurm-nodes":
        text = ex.slurm_nodes_conf(fab)
    else:
        text = ex.gres_conf(fab, device_dir=device_dir)
    _write_or_print(text, out)
