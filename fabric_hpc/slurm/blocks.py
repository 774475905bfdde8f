"""Slurm's topology/block, as the agent must respect it: a pin Slurm's block plugin would not allocate is
refused (``Reason=BadConstraints``) and the job is handed off, so each pending job is placed only on a host
set the plugin accepts (:func:`fit`). The rules were read in Slurm 25.11.7's
``src/plugins/topology/block/eval_nodes_block.c``:

* base blocks are the ``BlockName`` lines in order; a block of level ``k`` is 2^k consecutive base blocks
  (``BlockSizes`` lists the levels, base size × 2^k; a last block may be short: ``r003`` alone when
  three racks make blocks of two);
* a job of N nodes is allocated inside one block of the smallest level whose size is at least N
  (:func:`fabric_hpc.placement.slurm.block_level`; none that large: anywhere), and inside it on at most
  ceil(N / llblock size) blocks of the level below (the llblock level);
* with ``--segment=S`` each segment of S nodes follows that rule on its own; a pinned job's segments are
  cut by Slurm from its nodes, which always succeeds when every base block holds a multiple of S of them:
  the job becomes N/S slices of the base blocks' level (S larger than a base block: handed to Slurm);
  Slurm before 25.11 starts no job with a node list and several segments (eval_nodes_block.c: "requires
  nodes with segment are not supported"; SchedMD's 9df147bc4e added it to 25.11), so there such a job is
  handed to Slurm too, as is a job of several segments with 25.11's ``--spread-segments`` (each segment in
  a base block of its own) or ``--consolidate-segments``, which the agent does not model.

The layout is what ``scontrol show topology`` prints (:func:`parse_topology`), or the fabric model's blocks
(:meth:`Blocks.from_fabric`, as ``fabric topology export --format topology-block`` writes them). Slurm before
24.11 prints no block sizes (23.11, 24.05: ``BlockName=r001 BlockIndex=0 Nodes=...`` only): the levels are
then those of the topology.conf slurmctld reads (:mod:`fabric_hpc.slurm.block_conf`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.hostlist import compress, expand, select
from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.placement.request import Request
from fabric_hpc.placement.slurm import block_level
from fabric_hpc.slurm.block_conf import DEFAULT_LEVELS, conf_paths, read_block_levels
from fabric_hpc.slurm.contract import Job, SlurmError
from fabric_hpc.slurm.slurm_settings import running_settings
from fabric_hpc.topology import export
from fabric_hpc.topology.model import Fabric

#: How often the agent reads the layout again (s), and after a failed read.
REFRESH_S = 600.0
RETRY_S = 300.0
#: The first Slurm whose topology/block starts a pinned job (``--nodelist``) of several segments.
PINNED_SEGMENTS_FROM = (25, 11)


@dataclass(frozen=True)
class Blocks:
    """Slurm's block layout on a fabric model: base blocks (hosts, in BlockIndex order), the base block
    size Slurm plans with, the block levels, and the fabric level whose domains are the base blocks (None:
    no level is)."""

    bases: tuple[tuple[str, ...], ...]
    base_size: int
    levels: frozenset[int]
    level: str | None = None
    #: slurmctld's release (``SLURM_VERSION`` of ``scontrol show config``); None: not read. Not part of
    #: the layout (equal layouts of two releases compare equal).
    slurm_version: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def pinned_segments(self) -> bool:
        """Whether Slurm starts a job with a node list and several segments (a release not read: yes)."""
        return self.slurm_version is None or self.slurm_version >= PINNED_SEGMENTS_FROM

    @classmethod
    def of(cls, fab: Fabric, bases: Sequence[Sequence[str]], base_size: int,
           levels: Collection[int]) -> Blocks:
        bases = tuple(tuple(b) for b in bases)
        level = None
        with contextlib.suppress(ConfigError):
            name = export.block_level(fab)
            if {frozenset(h) for _, h in export.block_members(fab)} == {frozenset(b) for b in bases}:
                level = name
        return cls(bases, base_size, frozenset(levels) | {0}, level)

    @classmethod
    def from_fabric(cls, fab: Fabric, block_size: int | None = None) -> Blocks:
        """The blocks ``fabric topology export --format topology-block`` writes for ``fab``."""
        members = [hosts for _, hosts in export.block_members(fab)]
        sizes = export.block_sizes([len(h) for h in members], block_size)
        return cls.of(fab, members, sizes[0], [(s // sizes[0]).bit_length() - 1 for s in sizes])


def parse_topology(fab: Fabric, text: str) -> Blocks | None:
    """The layout ``scontrol show topology`` prints under topology/block (``BlockName=r001 BlockIndex=0
    Nodes=r001-h[01-18] BlockSize=18`` per base block, ``AggregatedBlock=... BlockSize=36`` per block of
    a higher level); None when it prints no base block (another topology plugin)."""
    bases: list[tuple[int, list[str]]] = []
    base_size, sizes = 0, set()
    for line in text.splitlines():
        kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "BlockName" in kv and kv.get("Nodes"):
            bases.append((int(kv.get("BlockIndex", len(bases))), expand(kv["Nodes"])))
            base_size = int(kv.get("BlockSize", 0)) or base_size
        elif "AggregatedBlock" in kv and kv.get("BlockSize", "").isdigit():
            sizes.add(int(kv["BlockSize"]))
    if not bases:
        return None
    base_size = base_size or min(len(h) for _, h in bases)
    levels = {(s // base_size).bit_length() - 1 for s in sizes if s >= base_size}
    return Blocks.of(fab, [h for _, h in sorted(bases)], base_size, levels)


def fit(blocks: Blocks, fab: Fabric, state: ClusterState, job: Job, request: Request,
        memo: dict | None = None, for_now: Collection[str] = frozenset()) -> Request:
    """``request`` kept to host sets Slurm's block plugin allocates for ``job`` (see the module); a
    ConfigError (the job goes to Slurm with its message) when no block of the model could ever hold it.
    ``memo``: one cycle's answers per job shape (the block is chosen on the cycle's first free hosts).
    ``for_now``: hosts of the request's ``exclude`` that are only busy
    (:meth:`.view_hosts.Hosts.kept_for_now`): not free now, yet a block's hosts all the same."""
    seg = job.segment_size if job.segment_size and job.nodes % job.segment_size == 0 else 0
    if seg and seg < job.nodes and job.segment_flags:
        flags = ", ".join(f"--{f.lower().replace('_', '-')}" for f in job.segment_flags)
        raise ConfigError(f"job {job.job_id}: {flags} lays out the segments its own way (spread: each in a "
                          "base block of its own, eval_nodes_block.c), which the agent does not model; "
                          "handed to Slurm",
                          hint="drop the flag to let the agent place the segments")
    for_now = frozenset(for_now)
    key = (job.nodes, job.gpus_per_node, seg, request, for_now)
    if memo is not None and key in memo:
        hit = memo[key]
        if isinstance(hit, ConfigError):
            raise ConfigError(f"job {job.job_id}: {hit.message}", hint=hit.hint)
        return hit
    try:
        out = _fit(blocks, fab, state, job.nodes, seg, request, for_now)
    except ConfigError as exc:
        if memo is not None:
            memo[key] = exc
        raise ConfigError(f"job {job.job_id}: {exc.message}", hint=exc.hint) from None
    if memo is not None:
        memo[key] = out
    return out


def _fit(blocks: Blocks, fab: Fabric, state: ClusterState, nodes: int, seg: int, request: Request,
         for_now: frozenset[str]) -> Request:
    gpn = request.gpus_per_node or 1
    # the fabric's hosts the lists name (not expanded: include=n[1-99998] against 16 hosts), but those
    # excluded only while they are busy
    excluded = (select(request.exclude, fab.host_pos) - for_now) if request.exclude else set()
    only = select(request.include, fab.host_pos) if request.include else None
    in_blocks = {h for b in blocks.bases for h in b}

    def ok(h: str) -> bool:  # the job may ever run there
        return (h in fab.host_pos and h not in excluded and (only is None or h in only)
                and len(fab.host_gpus(h)) >= gpn)

    out = [h for h in fab.hosts if h not in in_blocks and ok(h)]
    if out:  # Slurm allocates no node outside the blocks
        given = set(expand(request.exclude)) if request.exclude else set()  # names outside the fabric too
        request = request.model_copy(update={"exclude": compress(sorted(given | set(out)))})
    if seg and seg < nodes:
        return _segments(blocks, fab, nodes, seg, request)
    level, ll = block_level(nodes, blocks.base_size, blocks.levels)
    usable = {h for h in in_blocks if ok(h)}
    free = {h for h in usable if h not in for_now and _free_gpus(fab, state, h) >= gpn}
    group = _choose(blocks, nodes, level, ll, free, usable)
    if group is None:
        size = blocks.base_size << level if level is not None else len(in_blocks)
        raise ConfigError(f"-N {nodes} under Slurm's topology/block needs {nodes} nodes inside one block of "
                          f"{size} and no block of the fabric model has that many hosts this job may use; "
                          "handed to Slurm",
                          hint="a node count that fits one block, or --segment (Slurm then splits the job "
                               "into segments, each inside one block)")
    if level == 0 and blocks.level is not None and request.within in (None, blocks.level):
        return request.model_copy(update={"within": blocks.level})  # one base block: the policy picks it
    return request.model_copy(update={"include": compress(sorted(h for h in group if h in usable))})


def _free_gpus(fab: Fabric, state: ClusterState, host: str) -> int:
    return sum(int(state.owner[fab.gpu_pos[g]]) == -1 for g in fab.host_gpus(host))


def _choose(blocks: Blocks, nodes: int, level: int | None, ll: int, free: set[str],
            usable: set[str]) -> list[str] | None:
    """The hosts of the block (its llblocks with the most free hosts, as many as Slurm lets the job use)
    where ``nodes`` fit now with the fewest free hosts (Slurm's choice, ties: the last); none fits now:
    the one with the most free hosts that could hold them; None when no block ever could."""
    span = len(blocks.bases) if level is None else 1 << level
    per_ll = 1 << ll
    max_ll = -(-nodes // (blocks.base_size * per_ll))
    best: tuple[tuple[int, int], list[str]] | None = None
    for start in range(0, len(blocks.bases), span):
        lls = []
        for s in range(start, min(start + span, len(blocks.bases)), per_ll):
            hosts = [h for b in blocks.bases[s:min(s + per_ll, start + span)] for h in b]
            lls.append((sum(h in free for h in hosts), sum(h in usable for h in hosts), hosts))
        lls.sort(key=lambda t: -t[0])
        top = lls[:max_ll]
        avail, cap = sum(t[0] for t in top), sum(t[1] for t in sorted(lls, key=lambda t: -t[1])[:max_ll])
        if cap < nodes:
            continue
        key = (0, avail) if avail >= nodes else (1, -avail)  # fits now: tightest; else: most free
        if best is None or key < best[0] or (key == best[0] and key[0] == 0):  # Slurm's ``bnc <= ...``
            best = (key, [h for t in top for h in t[2]])
    return None if best is None else best[1]


def _segments(blocks: Blocks, fab: Fabric, nodes: int, seg: int, request: Request) -> Request:
    """``--segment=S``: N/S slices of the base blocks' level (each base block then holds a multiple of S)."""
    slices = nodes // seg
    if not blocks.pinned_segments:
        raise ConfigError(f"--segment={seg} makes {slices} segments, and Slurm {shown(blocks.slurm_version)} "
                          "(before 25.11) starts no job with a node list and several segments "
                          "(\"requires nodes with segment are not supported\"); handed to Slurm",
                          hint="Slurm places such a job itself; the agent places --segment jobs on Slurm "
                               "25.11 and later")
    if seg > blocks.base_size or blocks.level is None:
        why = (f"segments of {seg} nodes are larger than a base block ({blocks.base_size})"
               if seg > blocks.base_size else "the base blocks are no level of the fabric model")
        raise ConfigError(f"--segment={seg} under Slurm's topology/block: {why}; the "
                          "agent places segments only inside one base block of a fabric level; "
                          "handed to Slurm",
                          hint=f"--segment={blocks.base_size} or less "
                               "(fabric_hpc.topology.export.segment_args)")
    alias = fabric_levels(fab).alias
    same = request.slice_level is not None and alias.get(request.slice_level) == alias.get(blocks.level)
    if request.tp is not None or (request.slices is not None and not (same and request.slices == slices)):
        raise ConfigError(f"--segment={seg} and the comment's "
                          f"{'tp' if request.tp else 'slices'} ask for different slices; handed to Slurm",
                          hint=f"drop --segment, or give slices={slices},slice_level={blocks.level}")
    return request.model_copy(update={"slices": slices, "slice_level": blocks.level})


class BlockSource:
    """The agent's block layout: ``scontrol show topology`` read at the first cycle and every
    :data:`REFRESH_S` after (after a failure: every :data:`RETRY_S`, keeping the last layout read); None
    while Slurm uses no topology/block (or has not answered yet)."""

    def __init__(self, fab: Fabric, run: Callable[[Sequence[str]], str], log: Callable[..., None]) -> None:
        self.fab, self.run, self.log = fab, run, log
        self.blocks: Blocks | None = None
        self._asked_at: float | None = None
        self._failed = False
        self._unread: str | None = None  # why the topology.conf could not be read last time

    def layout(self) -> Blocks | None:
        now = time.monotonic()
        if self._asked_at is not None and now - self._asked_at < (RETRY_S if self._failed else REFRESH_S):
            return self.blocks
        self._asked_at = now
        sizes_from = "scontrol show topology"
        try:
            text = self.run(["scontrol", "show", "topology"])
            blocks = parse_topology(self.fab, text)
            if blocks is not None:
                settings, unread = self._settings()
                if "BlockSize=" not in text:  # Slurm < 24.11: no sizes in the answer
                    blocks, sizes_from = self.levels_of_conf(blocks, settings, unread)
                known = self.blocks.slurm_version if self.blocks else None  # kept when not read now
                blocks = replace(blocks, slurm_version=release(settings.get("SLURM_VERSION", "")) or known)
        except (SlurmError, ValueError) as exc:  # ValueError: a line the parser could not read
            if not self._failed:
                self.log("block_topology_error", error=str(exc)[:500], kept=self.blocks is not None)
            self._failed = True
            return self.blocks
        self._failed = False
        was = self.blocks.slurm_version if self.blocks else None
        if blocks != self.blocks or (blocks is not None and blocks.slurm_version != was):  # an upgrade too
            self.log("block_topology", blocks=len(blocks.bases) if blocks else 0,
                     base_size=blocks.base_size if blocks else None,
                     levels=sorted(blocks.levels) if blocks else [],
                     fabric_level=blocks.level if blocks else None, sizes_from=sizes_from,
                     slurm_version=shown(blocks.slurm_version) if blocks else None)
        self.blocks = blocks
        return blocks

    def _settings(self) -> tuple[Mapping[str, str], str]:
        """The running slurmctld's settings, and why they are not there ('': read)."""
        try:
            settings = running_settings(run=self.run)
        except SlurmError as exc:
            return {}, str(exc)
        return (settings, "") if settings else ({}, "scontrol show config gave no settings")

    def levels_of_conf(self, blocks: Blocks, settings: Mapping[str, str], unread: str) -> tuple[Blocks, str]:
        """``blocks`` with the base size and levels of the topology.conf slurmctld reads
        (:mod:`~fabric_hpc.slurm.block_conf`: beside its ``SLURM_CONF``, or a configless node's copy), and
        where they came from. Slurm 23.11 and 24.05 print only ``BlockName``, ``BlockIndex`` and ``Nodes``
        (24.05.8's topology_block.c, _print_topo_record), and a 36-node job read as one of no level
        (anywhere) was pinned over two racks that form no block: never started. A file that cannot be
        read: the fabric model's default sizes where its blocks are Slurm's, else Slurm's defaults; an
        ``agent.block_sizes_unread`` record says so, once per reason."""
        try:
            if unread and not settings:
                raise ConfigError(unread)
            got, where = read_block_levels(conf_paths(settings.get("SLURM_CONF", "")))
            self._unread = None
        except (FabricError, OSError, ValueError) as exc:
            got, where = self._model_levels(blocks)
            if str(exc) != self._unread:
                self.log("block_sizes_unread", error=str(exc)[:300], used=where)
            self._unread = str(exc)
        base, levels = got or (None, DEFAULT_LEVELS)
        return Blocks(blocks.bases, base or len(blocks.bases[0]), levels | {0}, blocks.level), where

    def _model_levels(self, blocks: Blocks) -> tuple[tuple[int, frozenset[int]] | None, str]:
        """The base size and levels of the fabric model's default BlockSizes (``fabric topology export
        --format topology-block`` without ``--block-size``) where its blocks are Slurm's (None: Slurm's
        defaults), and which of the two."""
        try:
            model = Blocks.from_fabric(self.fab) if blocks.level is not None else None
        except ConfigError:  # blocks of unequal sizes: no BlockSizes the model would write
            model = None
        if model is None:
            return None, "Slurm's defaults"
        return (model.base_size, model.levels), "the fabric model"


def release(version: str) -> tuple[int, int] | None:
    """``25.05.8`` (``SLURM_VERSION``) -> (25, 5); None for text that names no release."""
    m = re.match(r"\s*(\d{2})\.(\d{2})\b", version)
    return (int(m[1]), int(m[2])) if m else None


def shown(version: tuple[int, int] | None) -> str | None:
    """(25, 5) -> ``25.05``, as Slurm names its releases; None for None."""
    return None if version is None else f"{version[0]}.{version[1]:02d}"
