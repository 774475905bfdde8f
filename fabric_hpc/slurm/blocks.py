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
  the job becomes N/S slices of the base blocks' level (S larger than a base block: handed to Slurm).

The layout is what ``scontrol show topology`` prints (:func:`parse_topology`), or the fabric model's blocks
(:meth:`Blocks.from_fabric`, as ``fabric topology export --format topology-block`` writes them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress, expand, select
from fabric_hpc.placement import ClusterState
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.placement.request import Request
from fabric_hpc.placement.slurm import block_level
from fabric_hpc.slurm.contract import Job, SlurmError
from fabric_hpc.topology import export
from fabric_hpc.topology.model import Fabric

#: How often the agent reads the layout again (s), and after a failed read.
REFRESH_S = 600.0
RETRY_S = 300.0


@dataclass(frozen=True)
class Blocks:
    """Slurm's block layout on a fabric model: base blocks (hosts, in BlockIndex order), the base block
    size Slurm plans with, the block levels, and the fabric level whose domains are the base blocks (None:
    no level is)."""

    bases: tuple[tuple[str, ...], ...]
    base_size: int
    levels: frozenset[int]
    level: str | None = None

    @classmethod
    def of(cls, fab: Fabric, bases: Sequence[Sequence[str]], base_size: int,
           levels: Collection[int]) -> Blocks:
        bases = tuple(tuple(b) for b in bases)
        level = None
        try:
            name = export.block_level(fab)
            if {frozenset(h) for _, h in export.block_members(fab)} == {frozenset(b) for b in bases}:
                level = name
        except ConfigError:
            pass
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
    a higher level); None when it prints no base block (another topology plugin). Slurm 23.11 prints the
    base blocks alone, without ``BlockSize`` (topology_block.c ``_print_topo_record`` at slurm-23-11-11-1):
    its levels are then taken as every level up to the block count, what its ``BlockLevels`` of
    ``fabric topology export --slurm-version 23.11`` says (and its default ``0-4`` up to 16 blocks)."""
    bases: list[tuple[int, list[str]]] = []
    base_size, sizes, sized = 0, set(), False
    for line in text.splitlines():
        kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
        sized = sized or "BlockSize" in kv
        if "BlockName" in kv and kv.get("Nodes"):
            bases.append((int(kv.get("BlockIndex", len(bases))), expand(kv["Nodes"])))
            base_size = int(kv.get("BlockSize", 0)) or base_size
        elif "AggregatedBlock" in kv and kv.get("BlockSize", "").isdigit():
            sizes.add(int(kv["BlockSize"]))
    if not bases:
        return None
    base_size = base_size or min(len(h) for _, h in bases)
    levels = {(s // base_size).bit_length() - 1 for s in sizes if s >= base_size} if sized \
        else {k for k in range(export.MAX_BLOCK_LEVELS) if (1 << k) <= len(bases)}
    return Blocks.of(fab, [h for _, h in sorted(bases)], base_size, levels)


def fit(blocks: Blocks, fab: Fabric, state: ClusterState, job: Job, request: Request,
        memo: dict | None = None) -> Request:
    """``request`` kept to host sets Slurm's block plugin allocates for ``job`` (see the module); a
    ConfigError (the job goes to Slurm with its message) when no block of the model could ever hold it.
    ``memo``: one cycle's answers per job shape (the block is chosen on the cycle's first free hosts)."""
    seg = job.segment_size if job.segment_size and job.nodes % job.segment_size == 0 else 0
    key = (job.nodes, job.gpus_per_node, seg, request)
    if memo is not None and key in memo:
        hit = memo[key]
        if isinstance(hit, ConfigError):
            raise ConfigError(f"job {job.job_id}: {hit.message}", hint=hit.hint)
        return hit
    try:
        out = _fit(blocks, fab, state, job.nodes, seg, request)
    except ConfigError as exc:
        if memo is not None:
            memo[key] = exc
        raise ConfigError(f"job {job.job_id}: {exc.message}", hint=exc.hint) from None
    if memo is not None:
        memo[key] = out
    return out


def _fit(blocks: Blocks, fab: Fabric, state: ClusterState, nodes: int, seg: int, request: Request) -> Request:
    gpn = request.gpus_per_node or 1
    # the fabric's hosts the lists name (not expanded: include=n[1-99998] against 16 hosts)
    excluded = select(request.exclude, fab.host_pos) if request.exclude else set()
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
    free = {h for h in usable if _free_gpus(fab, state, h) >= gpn}
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

    def layout(self) -> Blocks | None:
        now = time.monotonic()
        if self._asked_at is not None and now - self._asked_at < (RETRY_S if self._failed else REFRESH_S):
            return self.blocks
        self._asked_at = now
        try:
            blocks = parse_topology(self.fab, self.run(["scontrol", "show", "topology"]))
        except (SlurmError, ValueError) as exc:  # ValueError: a line the parser could not read
            if not self._failed:
                self.log("block_topology_error", error=str(exc)[:500], kept=self.blocks is not None)
            self._failed = True
            return self.blocks
        self._failed = False
        if blocks != self.blocks:
            self.log("block_topology", blocks=len(blocks.bases) if blocks else 0,
                     base_size=blocks.base_size if blocks else None,
                     levels=sorted(blocks.levels) if blocks else [],
                     fabric_level=blocks.level if blocks else None)
        self.blocks = blocks
        return blocks
