"""Exporters: Slurm ``topology.conf`` (tree, block), ``topology.yaml`` (Slurm >= 25.05: in
:mod:`fabric_hpc.topology.export_yaml`), ``slurm.conf`` node lines, ``gres.conf`` with
``Links=``/``Cores=``, and NCCL topology XML for one host.

Slurm's topology/tree needs a tree of switches, but on a rail-optimised fabric every host hangs off
several leaf switches (one per rail). Following NVIDIA's SuperPOD guidance, each switch *group* is
exported as one logical switch: a scalable unit's rail leaves become one ``SwitchName``.

topology/block: the blocks are the multi-host NVLink domains, else the leaf groups. Slurm plans with
a *base* block size and aggregates 2, 4, 8 ... consecutive blocks into higher levels, so
``BlockSizes`` must be ``base × 2^k`` (anything else is fatal to slurmctld) and every block must hold
at least ``base`` nodes. Blocks of unequal sizes are refused unless the caller picks the base
(``block_size``). Hosts in no block are written with a note of what Slurm does with them
(:func:`outside_blocks_note`). A fabric request with ``slices`` of the block level maps to ``--segment`` (see
:func:`segment_args`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fabric_hpc.errors import ConfigError, one_line
from fabric_hpc.hostlist import compress
from fabric_hpc.topology.model import Fabric, gpu_numa_of
from fabric_hpc.topology.spec import HostType

if TYPE_CHECKING:
    from fabric_hpc.placement.request import Request

MAX_BLOCK_LEVELS = 16  # Slurm: a BlockSizes level above base × 2^15 is invalid
#: The first Slurm that reads ``BlockSizes``. 23.11's topology/block reads ``BlockLevels`` (the levels as bit
#: indexes k of base × 2^k; an unknown key such as ``BlockSizes`` is fatal) and takes the base size from the
#: blocks, which must all hold as many nodes ("children count no equal bblock_node_cnt" is fatal):
#: src/plugins/topology/block/topology_block.c at slurm-23-11-11-1; block_record.c at slurm-24-05-8-1.
BLOCK_SIZES_SINCE = (24, 5)
#: The first Slurm that has topology/block (22.05 and 23.02 have no topology_block.so: slurmctld is fatal).
BLOCK_SINCE = (23, 11)
TOPOLOGY_KINDS = ("tree", "block", "flat")

#: GB/s per NVLink link (both directions): NVLink2/3/4 50 (V100 6 × 50 = 300, A100 12 × 50 = 600,
#: H100 18 × 50 = 900); NVLink5 (Blackwell) 100 (B200/GB200 18 × 100 = 1800). nvidia-smi topo: NV18.
NVLINK_GBPS_PER_LINK = 50.0
NVLINK5_GBPS_PER_LINK = 100.0
DEFAULT_SM = "90"  # no longer written: a model the table does not know gets no sm (NCCL asks the GPU)
DEFAULT_ARCH = "x86_64"

# GPU model name → (compute capability as NCCL's sm, GB/s per NVLink link, a Grace (arm64) superchip)
_GPU_GENERATIONS = {
    "gb300": ("103", NVLINK5_GBPS_PER_LINK, True), "b300": ("103", NVLINK5_GBPS_PER_LINK, False),
    "gb200": ("100", NVLINK5_GBPS_PER_LINK, True), "b200": ("100", NVLINK5_GBPS_PER_LINK, False),
    "b100": ("100", NVLINK5_GBPS_PER_LINK, False), "gh200": ("90", NVLINK_GBPS_PER_LINK, True),
    "h200": ("90", NVLINK_GBPS_PER_LINK, False), "h100": ("90", NVLINK_GBPS_PER_LINK, False),
    "h800": ("90", NVLINK_GBPS_PER_LINK, False), "h20": ("90", NVLINK_GBPS_PER_LINK, False),
    "a100": ("80", NVLINK_GBPS_PER_LINK, False), "a800": ("80", NVLINK_GBPS_PER_LINK, False),
    "v100": ("70", NVLINK_GBPS_PER_LINK, False),
    # PCIe data-centre GPUs, compute capability from NVIDIA's table (https://developer.nvidia.com/cuda-gpus)
    "l40s": ("89", NVLINK_GBPS_PER_LINK, False), "l40": ("89", NVLINK_GBPS_PER_LINK, False),
    "l4": ("89", NVLINK_GBPS_PER_LINK, False), "a10": ("86", NVLINK_GBPS_PER_LINK, False),
    "a40": ("86", NVLINK_GBPS_PER_LINK, False), "a30": ("80", NVLINK_GBPS_PER_LINK, False),
    "t4": ("75", NVLINK_GBPS_PER_LINK, False),
}
_GPU_NAME = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(_GPU_GENERATIONS, key=len, reverse=True))
                       + r")(?![0-9])")
_ARCH_FEATURES = {"grace": "arm64", "arm64": "arm64", "aarch64": "arm64", "x86_64": "x86_64",
                  "ppc64": "ppc64", "ppc64le": "ppc64"}


def _generation(gpu_model: str) -> tuple[str, float, bool] | None:
    match = _GPU_NAME.search(gpu_model.lower())
    return _GPU_GENERATIONS[match.group(1)] if match else None


def gpu_sm(gpu_model: str) -> str | None:
    """NCCL's ``sm`` (compute capability × 10) of a GPU model: B200/GB200 100, H100 90, A100 80,
    L40S 89; None for a model this table does not know: the XML then has no ``sm``, and NCCL reads
    the device's own (it asks the GPU only when the attribute is missing, src/graph/xml.cc)."""
    gen = _generation(gpu_model)
    return gen[0] if gen else None


def nvlink_gbps_per_link(gpu_model: str) -> float:
    """GB/s of one NVLink link of a GPU model: 100 for NVLink5 (Blackwell), else 50."""
    gen = _generation(gpu_model)
    return gen[1] if gen else NVLINK_GBPS_PER_LINK


def cpu_arch(ht: HostType) -> str:
    """NCCL's CPU ``arch``: a host feature naming it (``grace``/``arm64``/``aarch64``, ``x86_64``,
    ``ppc64``), else ``arm64`` for Grace superchips (GB200, GB300, GH200), else ``x86_64``."""
    for feature in ht.features:
        if feature.lower() in _ARCH_FEATURES:
            return _ARCH_FEATURES[feature.lower()]
    gen = _generation(ht.gpu_model)
    return "arm64" if gen and gen[2] else DEFAULT_ARCH


def gres_type(gpu_model: str) -> str:
    """Slurm GRES type for a GPU model: ``H100-SXM5-80GB`` → ``h100``."""
    slug = re.split(r"[-_ ]", gpu_model.strip().lower())[0]
    return re.sub(r"[^a-z0-9]", "", slug) or "gpu"


def gres_type_full(gpu_model: str) -> str:
    """The whole model as a GRES type: ``A100-SXM4-40GB`` → ``a100-sxm4-40gb`` (lower case; white
    space and ``_`` → ``-``; other characters than letters, digits, ``.`` and ``-`` dropped)."""
    slug = re.sub(r"[^a-z0-9.-]", "", re.sub(r"[\s_]+", "-", gpu_model.strip().lower())).strip("-.")
    return slug if slug[:1].isalpha() else f"gpu-{slug}".rstrip("-")


def gres_types(fabric: Fabric) -> dict[str, str]:
    """GRES type of each GPU model of the fabric: the short one (:func:`gres_type`, ``h100``) unless
    another model of the fabric has the same short one; then each of those gets its whole model
    (:func:`gres_type_full`: ``h100-pcie-80gb`` and ``h100-sxm5-80gb``), so a job can ask for one."""
    models = {ht.gpu_model for ht in fabric.spec.host_types.values() if ht.gpus}
    fulls: dict[str, set[str]] = defaultdict(set)  # short type -> the distinct models having it
    for model in models:
        fulls[gres_type(model)].add(gres_type_full(model))
    return {m: gres_type(m) if len(fulls[gres_type(m)]) == 1 else gres_type_full(m) for m in models}


def topology_conf(fabric: Fabric, plugin: str = "tree", *, block_size: int | None = None,
                  slurm_version: tuple[int, ...] | None = None) -> str:
    """``topology.conf`` for ``topology/tree`` or ``topology/block`` (block needs Slurm ≥ 23.11).

    ``block_size`` is the base block size of ``topology/block`` (default: the size of the blocks,
    which must then all be equal). ``slurm_version`` is the Slurm that reads it (None: 24.05 or newer):
    23.11 gets ``BlockLevels`` instead of ``BlockSizes`` (:data:`BLOCK_SIZES_SINCE`).
    """
    if plugin == "tree":
        lines = [f"# topology/tree for fabric {one_line(fabric.name)} (generated by fabric-hpc)"]
        for name, kind, members in _switches(fabric):
            lines.append(f"SwitchName={name} {kind}={members}")
        return "\n".join(lines) + "\n"
    if plugin == "block":
        if block_size is not None and block_size < 1:
            raise ConfigError(f"block_size must be >= 1, not {block_size}")
        blocks = block_members(fabric)
        if slurm_version is not None and tuple(slurm_version[:2]) < BLOCK_SIZES_SINCE:
            _check_block_levels_release(tuple(slurm_version[:2]), [len(h) for _, h in blocks], block_size)
        sizes = block_sizes([len(h) for _, h in blocks], block_size)
        size_line = _block_levels_line(sizes, slurm_version)
        reader = "Slurm >= 24.05" if size_line.startswith("BlockSizes=") else "Slurm 23.11"
        lines = [f"# topology/block ({reader}) for fabric {one_line(fabric.name)} (generated by fabric-hpc)"]
        if note := outside_blocks_note(fabric):
            lines.append("# note: " + note)
        lines += [f"BlockName={name} Nodes={compress(hosts)}" for name, hosts in blocks]
        lines.append(size_line)
        return "\n".join(lines) + "\n"
    raise ConfigError(f"unknown topology plugin {plugin!r}", hint="use 'tree' or 'block'")


def _check_block_levels_release(release: tuple[int, ...], counts: list[int], block_size: int | None) -> None:
    """ConfigError for a Slurm before 24.05 that cannot read the blocks: no topology/block before 23.11;
    23.11 takes the base size from blocks that must all hold as many hosts (no ``BlockSizes``)."""
    shown = f"{release[0]}.{release[1]:02d}" if len(release) > 1 else str(release[0])
    if release < BLOCK_SINCE:
        raise ConfigError(f"Slurm {shown} has no topology/block (slurmctld would not start: \"Couldn't "
                          "find the specified plugin name for topology/block\")",
                          hint="export --format topology-tree, or give the Slurm 23.11+ that reads the file")
    held = sorted({c for c in counts if c > 0})
    if len(held) > 1:
        raise ConfigError(f"Slurm {shown}'s topology/block needs every block of the same size and takes that "
                          f"as the base (no BlockSizes before 24.05); these blocks hold {_size_counts(held)} "
                          "hosts", hint="use Slurm 24.05+ (or topology/tree) for blocks of different sizes")
    if block_size is not None and held and block_size != held[0]:
        raise ConfigError(f"Slurm {shown} takes the base block size from its blocks ({held[0]} hosts); a "
                          f"block size of {block_size} cannot be given to it (no BlockSizes before 24.05)",
                          hint="leave out --block-size (install.block_size)")


def _block_levels_line(levels: list[int], slurm_version: tuple[int, ...] | None) -> str:
    """``BlockSizes=…`` (Slurm 24.05+), or 23.11's ``BlockLevels=0-K`` (its blocks checked before:
    :func:`_check_block_levels_release`)."""
    if slurm_version is None or tuple(slurm_version[:2]) >= BLOCK_SIZES_SINCE:
        return f"BlockSizes={','.join(map(str, levels))}"
    return f"BlockLevels=0-{len(levels) - 1}" if len(levels) > 1 else "BlockLevels=0"


def _switches(fabric: Fabric) -> list[tuple[str, str, str]]:
    """(switch, ``Nodes``/``Switches``, members) per logical switch, leaves first."""
    if not fabric.groups:
        raise ConfigError(f"fabric {fabric.name!r} has no network",
                          hint="add a network section to export a tree")
    children = defaultdict(list)
    for g in fabric.groups.values():
        if g.parent:
            children[g.parent].append(g.name)
    out = []
    for level in fabric.levels:
        for g in fabric.groups.values():
            if g.level == level:
                out.append((g.name, "Nodes", compress(g.hosts)) if g.hosts
                           else (g.name, "Switches", ",".join(children[g.name])))
    return out


def block_level(fabric: Fabric) -> str:
    """The fabric level whose domains are the blocks: ``nvlink``, else the lowest network level."""
    if fabric.spec.nvlink_domains:
        return "nvlink"
    if fabric.groups:
        return fabric.levels[0]
    raise ConfigError(f"fabric {fabric.name!r} has neither NVLink domains nor a network to form blocks")


def block_members(fabric: Fabric) -> list[tuple[str, list[str]]]:
    """(block name, hosts) in order: the multi-host NVLink domains, else the leaf groups."""
    if block_level(fabric) == "nvlink":
        return [(d.name, [h for h in fabric.hosts if fabric.nvl_domain_of_host.get(h) == d.name])
                for d in fabric.spec.nvlink_domains]
    return [(g.name, list(g.hosts)) for g in fabric.groups.values() if g.hosts]


def hosts_outside_blocks(fabric: Fabric) -> list[str]:
    """Hosts in no block: with NVLink domains as the blocks, the hosts in no multi-host domain."""
    if block_level(fabric) != "nvlink":
        return []  # every host is under a leaf group (the validation requires it)
    return [h for h in fabric.hosts if h not in fabric.nvl_domain_of_host]


def outside_blocks_note(fabric: Fabric) -> str:
    """What Slurm's topology/block does with the hosts in no block ("" when every host is in one).

    Slurm 25.11 (src/plugins/topology/block): slurmctld starts and logs ``Blocks lack access to N
    nodes`` (24.11: ``blocks lack ...``); ``topology_p_eval_nodes`` uses the block selection only
    when a job's usable nodes overlap a block, and that selection picks block nodes alone
    (``eval_nodes_block``), refusing a ``--nodelist`` outside the blocks
    (``ESLURM_REQUESTED_TOPO_CONFIG_UNAVAILABLE``; 26.05.3 answers
    ``ESLURM_TOPO_REQ_NODES_NO_MATCH_TOPO``, which ``common_topo_choose_nodes`` does not take as final:
    such a job runs on the host it names; 23.11.11's ``_eval_nodes_block`` returns a plain SLURM_ERROR:
    sbatch takes the job and backfill starts it on the host it names, seen live). So such hosts
    run only the jobs that can use no block host at all (their partition, ``--constraint`` or GPU
    type rules every block host out)."""
    outside = hosts_outside_blocks(fabric)
    if not outside:
        return ""
    return (f"{compress(outside)} in no multi-host NVLink domain, so in no block: Slurm's topology/block "
            f"gives them only to jobs that can use no block host (a partition, --constraint or GPU type, "
            f"e.g. --gres=gpu:{_first_gres_type(fabric, outside)}:N, that rules out every block host); a job "
            f"that may use both gets block hosts only, and is refused if its --nodelist names them (Slurm "
            f"23.11 and 26.05 run it there). slurmctld logs 'Blocks lack access to {len(outside)} nodes' "
            f"('blocks ...' on Slurm 24.11)")


def _first_gres_type(fabric: Fabric, hosts: list[str]) -> str:
    """The GRES type of the first of ``hosts`` (for the example in the note)."""
    ht = fabric.spec.host_types[fabric.host_type_of[hosts[0]]]
    return gres_types(fabric).get(ht.gpu_model, "TYPE") if ht.gpus else "TYPE"


def block_sizes(sizes: list[int], base: int | None = None) -> list[int]:
    """Slurm's ``BlockSizes`` for blocks of ``sizes`` hosts: ``base × 2^k`` up to the block count.

    Unequal blocks without a ``base`` are a ConfigError (Slurm would plan every block as one of
    the base size and leave the rest of the larger ones out of its block arithmetic).
    """
    sizes = [s for s in sizes if s > 0]
    if not sizes:
        raise ConfigError("no block has any host", hint="check the fabric's NVLink domains / leaf groups")
    smallest, largest = min(sizes), max(sizes)
    if base is None:
        if smallest != largest:
            counts = _size_counts(sizes)
            raise ConfigError(
                f"blocks of unequal sizes ({counts} hosts): Slurm's BlockSizes must be base × 2^k and "
                f"every block needs at least the base size",
                hint=f"give the base: --block-size N with N <= {smallest} (`fabric slurm install`: "
                     f"install.block_size = N in the agent config; Slurm then plans N hosts per block), "
                     f"or make every block {largest} hosts")
        base = smallest
    if base > smallest:
        raise ConfigError(f"block size {base} is larger than the smallest block ({smallest} hosts)",
                          hint=f"use --block-size {smallest} or less (install.block_size for "
                               "`fabric slurm install`)")
    levels, k = [], 0
    while (1 << k) <= len(sizes) and k < MAX_BLOCK_LEVELS:
        levels.append(base << k)
        k += 1
    return levels


def _size_counts(sizes: list[int]) -> str:
    """``1 × 3, 2 × 4`` for blocks of 3, 4 and 4 hosts."""
    return ", ".join(f"{sizes.count(n)} × {n}" for n in sorted(set(sizes)))


def segment_args(fabric: Fabric, request: Request) -> list[str]:
    """``sbatch`` options that make Slurm alone keep a fabric request's slices in blocks.

    A request of ``nodes`` hosts in ``slices`` slices of the block level (:func:`block_level`, or a
    level name that is the same level on this fabric, e.g. ``rack`` on an NVL72) becomes
    ``--segment=<nodes / slices>`` under topology/block (Slurm >= 24.05); so do the slices that
    ``tp`` groups wider than a host need (``Request.tp_slices``: ``tp / gpus_per_node`` hosts per
    segment, in one NVLink domain). Requests without slices need nothing; slices of another level,
    of GPUs, or larger than the smallest block (Slurm would split them over blocks) are a ConfigError.
    """
    sliced = (request.slices, request.slice_level) if request.slices is not None else request.tp_slices()
    if sliced is None:
        return []
    (slices, level), nodes, wanted = sliced, request.nodes, block_level(fabric)
    if not _same_level(fabric, level, wanted) or nodes is None:
        what = f"tp={request.tp} groups" if request.tp else f"slices of {level!r}"
        raise ConfigError(f"{what} ({'hosts' if nodes else 'GPUs'}) have no Slurm --segment "
                          f"equivalent: the blocks of this fabric are its {wanted!r} domains",
                          hint=f"use nodes=N,gpus_per_node=G with slice_level={wanted} (or tp), "
                               "or leave the slices to the fabric agent")
    segment = int(nodes) // int(slices)
    sizes = {len(hosts) for _, hosts in block_members(fabric) if hosts}
    if segment > min(sizes):
        raise _segment_too_big(request, segment, sizes, wanted)
    return [f"--segment={segment}"]


def _same_level(fabric: Fabric, level: str, wanted: str) -> bool:
    """Whether ``level`` names the same domains as ``wanted`` on this fabric (aliases included:
    ``rack`` is ``nvlink`` on an NVL72, where each rack is one NVLink domain)."""
    if level == wanted:
        return True
    from fabric_hpc.placement.levels import fabric_levels

    alias = fabric_levels(fabric).alias
    return level in alias and alias[level] == alias.get(wanted)


def _segment_too_big(request: Request, segment: int, sizes: set[int], level: str) -> ConfigError:
    """The refusal of a segment larger than the smallest block (Slurm's base block), with the
    request that fits."""
    nodes, gpn, smallest = int(request.nodes or 0), int(request.gpus_per_node or 1), min(sizes)
    if request.slices is None:  # tp groups of tp / gpus_per_node hosts
        what = f"a tp={request.tp} group over {gpn} GPUs per host spans {segment} hosts"
        hint = (f"use a tp of at most {smallest * gpn} GPUs, or more GPUs per node (a group may span at "
                f"most {smallest} hosts)")
    else:
        what = f"a slice of nodes={nodes} / slices={request.slices} is {segment} hosts"
        more = next((k for k in range(int(request.slices) + 1, nodes + 1) if not nodes % k and nodes // k <= smallest),
                    None)
        hint = f"use slices={more} ({nodes // more} hosts each)" if more else f"use at most {smallest} hosts per slice"
    held = f"hold {smallest} hosts each" if len(sizes) == 1 else f"hold {smallest} hosts or more"
    return ConfigError(f"{what}, more than one block of this fabric (its {level!r} domains {held}): "
                       f"--segment={segment} could not keep it in one block",
                       hint=hint)


def slurm_node_fields(fabric: Fabric, host: str) -> dict[str, str]:
    """The ``NodeName=`` fields of one host for slurm.conf."""
    ht = fabric.host_type(host)
    fields = {
        "CPUs": str(ht.sockets * ht.cores_per_socket * ht.threads_per_core),
        "Sockets": str(ht.sockets),
        "CoresPerSocket": str(ht.cores_per_socket),
        "ThreadsPerCore": str(ht.threads_per_core),
        "RealMemory": str(int(ht.memory_gb * 1024)),  # floored: never more MiB than the model says
    }
    if ht.gpus:
        fields["Gres"] = f"gpu:{gres_types(fabric)[ht.gpu_model]}:{ht.gpus}"
    if ht.features:
        fields["Features"] = ",".join(ht.features)
    return fields


def slurm_nodes_conf(fabric: Fabric, other_gres: Mapping[str, str] | None = None) -> str:
    """``NodeName=`` lines for slurm.conf, hosts with identical fields folded into one line;
    ``other_gres`` ({host: ``nvme:1``}, a site's GRES other than GPUs) join each host's ``Gres``."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
    for host in fabric.hosts:
        fields = slurm_node_fields(fabric, host)
        if other := (other_gres or {}).get(host):
            fields["Gres"] = ",".join(filter(None, (fields.get("Gres"), other)))
        groups[tuple(fields.items())].append(host)
    lines = [f"NodeName={compress(hosts)} " + " ".join(f"{k}={v}" for k, v in fields)
             for fields, hosts in groups.items()]
    return "\n".join(lines) + "\n"


def gpu_links(fabric: Fabric, host: str) -> list[list[int]]:
    """Slurm ``Links=`` matrix for a host: -1 on the diagonal, NVLink count between GPU pairs.

    Through NVSwitches every pair gets the GPU's links; in a direct mesh (no NVSwitch) a pair gets
    its share, NVLink / (GPUs - 1) / link GB/s, at least 1 (the model links every pair)."""
    gpus = fabric.host_gpus(host)
    ids = [fabric.gpu_pos[g] for g in gpus]
    idx = fabric.index
    per_link = nvlink_gbps_per_link(fabric.host_type(host).gpu_model)
    out = []
    for a in ids:
        row = []
        for b in ids:
            if a == b:
                row.append(-1)
            elif idx.gpu_nvl[a] == idx.gpu_nvl[b]:
                row.append(max(1, round(float(idx.nvl_pair_gbps[idx.gpu_nvl[a]]) / per_link)))
            else:
                row.append(0)
        out.append(row)
    return out


#: Characters a gres.conf ``File=`` value cannot hold: white space ends it, '#' starts a comment,
#: ',' and '[...]' are Slurm's lists and ranges of files, '=' a new key, quotes Slurm's quoting.
_DEVICE_DIR_SYNTAX = set("#,=[]\"'")


def check_device_dir(device_dir: str) -> str:
    """``device_dir`` if gres.conf's ``File=<device_dir>/nvidiaN`` reads back as that file: an
    absolute path without white space, control characters, or ``# , = [ ] " '``; else a ConfigError."""
    bad = sorted({c for c in device_dir if c.isspace() or not c.isprintable() or c in _DEVICE_DIR_SYNTAX})
    if not device_dir.startswith("/") or bad:
        why = (f"holds {', '.join(repr(c) for c in bad)}, which gres.conf would read as syntax (a line "
               "break, a comment, a list of files or another key)") if bad else "is not an absolute path"
        raise ConfigError(f"device directory {device_dir[:80]!r} {why}",
                          hint="give the absolute directory of the nvidiaN device files, e.g. /dev "
                               "(--device-dir; install.gres_device_dir in the agent config)")
    return device_dir


def gres_conf(fabric: Fabric, *, device_dir: str = "/dev", autodetect: str = "off") -> str:
    """``gres.conf`` with one line per GPU: ``File=``, ``Cores=`` (its socket) and ``Links=``. The global
    ``AutoDetect`` is ``autodetect`` (a site's own); when that is not ``off`` each line carries a
    node-local ``AutoDetect=off``, which trumps it on fabric's nodes (gres.conf(5))."""
    local = "" if autodetect.lower() == "off" else " AutoDetect=off"
    lines = [f"# gres.conf for fabric {one_line(fabric.name)} (generated by fabric-hpc)",
             f"AutoDetect={autodetect}"]
    by_shape: dict[tuple, list[str]] = defaultdict(list)
    types = gres_types(fabric)
    for host in fabric.hosts:
        by_shape[(fabric.host_type_of[host], tuple(map(tuple, gpu_links(fabric, host))))].append(host)
    for (type_name, links), hosts in by_shape.items():
        ht = fabric.spec.host_types[type_name]
        numa = gpu_numa_of(ht)
        for i in range(ht.gpus):
            lo = numa[i] * ht.cores_per_socket
            cores = f"{lo}-{lo + ht.cores_per_socket - 1}" if ht.cores_per_socket > 1 else str(lo)
            lines.append(f"NodeName={compress(hosts)}{local} Name=gpu Type={types[ht.gpu_model]} "
                         f"File={Path(device_dir) / f'nvidia{i}'} Cores={cores} "
                         f"Links={','.join(map(str, links[i]))}")
    return "\n".join(lines) + "\n"
