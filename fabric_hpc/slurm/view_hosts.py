"""What Slurm says of the fabric's hosts that filters where a pending job may go (:class:`Hosts`, used by
:func:`fabric_hpc.slurm.view.build_view`): its own ``-x``, GPU type, partitions, reservations (active and
to come), free CPUs, free memory (where Slurm allocates it), features (``--constraint``) and, for
``--exclusive`` jobs, hosts in use."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress
from fabric_hpc.slurm import reservations as resv
from fabric_hpc.slurm.contract import Job, Node, Reservation


@dataclass(frozen=True)
class Hosts:
    """What Slurm says of the fabric's hosts that filters where a pending job may go."""

    free_cpus: dict[str, int]
    #: Slurm's GRES type(s) of each host's GPUs (None: untyped; several: ``a100,h100``).
    gpu_types: dict[str, str | None]
    #: The partitions Slurm lists each host in.
    partitions: dict[str, tuple[str, ...]]
    #: The hosts in an active reservation: its name, None where Slurm does not name it (22.05, pyslurm).
    reserved: dict[str, str | None] = field(default_factory=dict)
    #: Reservations still to come (:func:`~fabric_hpc.slurm.reservations.upcoming`) and the cycle's time.
    upcoming: tuple[Reservation, ...] = ()
    now: float = 0.0
    #: The hosts where something runs (CPUs, GPUs or memory allocated): never for an ``--exclusive`` job.
    busy: frozenset[str] = frozenset()
    #: Free memory in MiB (RealMemory - AllocMem) of the hosts where Slurm allocated memory (consumable).
    free_mem: dict[str, int] = field(default_factory=dict)
    #: Each host's active features (a job's ``--constraint`` must be satisfied there).
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: :meth:`kept_from` per job shape (one cycle: a thousand jobs share a few shapes).
    #: Each host's CPUs and memory (MiB) in all (Slurm's CPUTot, RealMemory): a job needing more per node
    #: never runs there, where one short of free ones waits (:meth:`kept_for_now`).
    total_cpus: dict[str, int] = field(default_factory=dict)
    total_mem: dict[str, int] = field(default_factory=dict)
    _memo: dict[tuple, tuple[frozenset[str], frozenset[str]] | ConfigError] = field(
        default_factory=dict, compare=False, repr=False)

    def kept_from(self, job: Job) -> frozenset[str]:
        """The hosts Slurm never starts ``job`` on: its own ``-x`` (:meth:`excluded`), of another GPU type,
        outside its partitions and reservations, in a reservation that starts before its time limit would
        end, those without its share of CPUs or its memory per node free (:func:`mem_per_node`), and for an
        ``--exclusive`` job those where anything runs; ConfigError when a rule leaves no host."""
        lasting, for_now = self._kept(job)
        own = self.excluded(job)
        return lasting | for_now | own if own else lasting | for_now

    def kept_for_now(self, job: Job) -> frozenset[str]:
        """Those of :meth:`kept_from` only while they are busy: too few CPUs or too little memory free, a
        reservation about to start, something running there (``--exclusive``). A host the job may use one
        day (topology/block asks whether a block could ever hold the job, :func:`.blocks.fit`)."""
        lasting, for_now = self._kept(job)
        return for_now - lasting - self.excluded(job)

    def _kept(self, job: Job) -> tuple[frozenset[str], frozenset[str]]:
        """(the hosts :meth:`kept_from` keeps the job from for good but its own ``-x``, those for now)."""
        need = math.ceil(job.cpus / max(job.nodes, 1)) if job.cpus else 0
        mem = mem_per_node(job) if self.free_mem else None
        key = (job.gpu_type, job.partition, job.reservation, need, job.time_limit_min, mem, job.exclusive,
               job.features)
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = (frozenset({*wrong_gpu_type(job, self.gpu_types),
                                  *lacking_features(job.features, self.features),
                                  *outside_partition(job, self.partitions),
                                  *outside_reservation(job, self.reserved, self.partitions),
                                  *(h for h, n in self.total_cpus.items() if n < need),
                                  *(h for h, n in self.total_mem.items()
                                    if mem is not None and mem != WHOLE_NODE_MEM and n < mem)}),
                       frozenset({*self.reserved_soon(job),
                                  *(h for h, free in self.free_cpus.items() if free < need),
                                  *(h for h, free in self.free_mem.items() if mem is not None and free < mem),
                                  *(self.busy if job.exclusive else ())}))
            except ConfigError as exc:
                hit = exc
            self._memo[key] = hit
        if isinstance(hit, ConfigError):
            raise ConfigError(hit.message, hint=hit.hint)
        return hit

    @classmethod
    def of(cls, nodes: Sequence[Node], free_cpus: dict[str, int], upcoming: tuple[Reservation, ...],
           now: float) -> Hosts:
        """What Slurm says of ``nodes`` (the fabric model's), with the free CPUs the view counted (hosts
        whose CPUs running jobs hold are left out of them) and the reservations to come."""
        return cls(free_cpus, {n.name: n.gpu_type for n in nodes}, {n.name: n.partitions for n in nodes},
                   {n.name: n.reservation or None for n in nodes if n.reserved}, upcoming, now,
                   frozenset(n.name for n in nodes if in_use(n)),
                   {n.name: mem for n in nodes if (mem := free_memory(n)) is not None},
                   {n.name: n.features for n in nodes},
                   total_cpus={n.name: n.cpus for n in nodes if n.cpus > 0},
                   total_mem={n.name: n.mem for n in nodes if n.mem > 0})

    def excluded(self, job: Job) -> set[str]:
        """The fabric hosts of the job's ``ExcNodeList``: its ``-x``, its ``exclude=`` (job_submit.lua adds
        it), or the agent's hand-over exclusion (outside ``include=``: kept to anyway). Slurm rejects a pin
        there whoever set it (``BadConstraints``). ConfigError when it leaves no host of the model."""
        out = {h for h in job.exc_nodes if h in self.partitions}
        if not out or len(out) < len(self.partitions):
            return out
        raise ConfigError(f"excludes every host of the fabric model (-x/ExcNodeList "
                          f"{compress(sorted(job.exc_nodes))}); handed to Slurm, which places it elsewhere",
                          hint="a fabric job needs hosts of the fabric model outside its -x")

    def reserved_soon(self, job: Job) -> set[str]:
        """The fabric hosts of reservations to come that ``job`` (starting now) would run into."""
        if not self.upcoming:
            return set()
        mine = {r for r in job.reservation.split(",") if r}
        soon = resv.kept_out(self.upcoming, mine, self.now, job.time_limit_min)
        return {h for h in soon if h in self.partitions}


def mem_per_node(job: Job) -> int:
    """The memory (MiB) ``job`` needs free on each of its nodes where Slurm allocates memory: its ``--mem``,
    its ``--mem-per-cpu`` × its CPUs per node, else all of a node's memory (``--mem=0``, or none asked
    without DefMem*: Slurm gives such a job the whole node's memory; returned as a need no host with any
    memory allocated meets)."""
    if job.mem_per_node > 0:
        return job.mem_per_node
    if job.mem_per_cpu > 0:
        return job.mem_per_cpu * max(1, math.ceil(job.cpus / max(job.nodes, 1)))
    return WHOLE_NODE_MEM


#: :func:`mem_per_node` of a job that takes all of a node's memory.
WHOLE_NODE_MEM = 2**62


def in_use(node: Node) -> bool:
    """Whether anything runs on ``node`` (CPUs, GPUs or memory allocated): no host for an ``--exclusive``
    job (:attr:`Hosts.busy`, and ``why``'s words for a pinned one)."""
    return bool(node.cpus_alloc or node.gpus_used or node.mem_alloc)


def unexplained(nodes: Sequence[Node], jobs: Sequence[Job]) -> bool:
    """Whether a node holds GPUs no active job of ``jobs`` lists there, or CPUs or memory while none lists
    it: a job that ended between the two reads (nodes first, then jobs), or a job hidden from the agent."""
    held: dict[str, set[int]] = {}
    for job in jobs:
        if job.active:
            for host in {*job.node_list, *job.gpus}:
                held.setdefault(host, set()).update(job.gpus.get(host, ()))
    return any(set(n.gpus_used) - held.get(n.name, set()) or (in_use(n) and n.name not in held)
               for n in nodes)


def settled(first: Sequence[Node], again: Sequence[Node]) -> list[Node]:
    """The nodes of the ``first`` read less what the read ``again`` after the jobs shows released: the GPUs
    used in both, the smaller CPU and memory allocation. What ended between the reads is free (it is in
    neither the jobs answer nor ``again``); what started meanwhile is as in ``first`` (the jobs answer
    holds it, or it started after both: the next cycle sees it)."""
    later = {n.name: n for n in again}
    out = []
    for node in first:
        if (then := later.get(node.name)) is None:
            out.append(node)
            continue
        both = set(then.gpus_used)
        out.append(replace(node, gpus_used=tuple(g for g in node.gpus_used if g in both),
                           cpus_alloc=min(node.cpus_alloc, then.cpus_alloc),
                           mem_alloc=min(node.mem_alloc, then.mem_alloc)))
    return out


def free_memory(node: Node) -> int | None:
    """The free memory (MiB, RealMemory - AllocMem) of ``node`` where Slurm allocated memory there; None
    where it allocated none (memory not consumable, or an idle node): no job is short of it there."""
    return node.mem - node.mem_alloc if node.mem_alloc else None


def outside_partition(job: Job, partitions: Mapping[str, tuple[str, ...]]) -> set[str]:
    """The hosts in none of the job's partitions (Slurm never starts it there); none when Slurm reports
    no partition of the job or of any host. ConfigError when that leaves no host of the fabric model."""
    want = {p for p in job.partition.split(",") if p}
    if not want or not any(partitions.values()):
        return set()
    outside = {h for h, parts in partitions.items() if not want & set(parts)}
    if len(outside) < len(partitions):
        return outside
    raise ConfigError(f"is in partition {job.partition!r}, which has no host of the fabric model; handed to "
                      "Slurm, which places it in its partition",
                      hint="the fabric model's hosts must be nodes of the partitions fabric jobs are "
                           "submitted to (slurm.conf PartitionName=... Nodes=...)")


def outside_reservation(job: Job, reserved: Mapping[str, str | None], hosts: Collection[str]) -> set[str]:
    """The hosts Slurm never starts the job on for its reservations: a job that names none may not use a host
    in an active reservation; a job that names some runs only on their hosts. ConfigError when Slurm names
    none of the job's reservations for a host of the fabric model (not active yet, or a Slurm answer that
    names no node's reservation: 22.05, pyslurm): handed to Slurm, which places it in its reservation."""
    mine = {r for r in job.reservation.split(",") if r}
    if not mine:
        return set(reserved)
    inside = {h for h, name in reserved.items() if name in mine}
    if inside:
        return set(hosts) - inside
    raise ConfigError(f"runs in reservation {job.reservation!r}, but Slurm names it for no host of the "
                      "fabric model now; handed to Slurm, which places it in its reservation",
                      hint="fabric places a reservation's jobs only where Slurm reports the reservation's "
                           "nodes (scontrol show nodes --json, Slurm 23.02+) while it is active (scontrol "
                           "show reservation)")


def wrong_gpu_type(job: Job, gpu_types: Mapping[str, str | None]) -> set[str]:
    """The hosts a job that names GPU types may not get: those without every type it names (compared
    exactly, as Slurm does); ConfigError when that leaves no host of the fabric model."""
    if not job.gpu_type:
        return set()
    want = set(job.gpu_type.split(","))
    wrong = {h for h, t in gpu_types.items() if not t or not want <= set(t.split(","))}
    if len(wrong) < len(gpu_types):
        return wrong
    have: dict[str, list[str]] = {}
    for host, t in gpu_types.items():
        have.setdefault(t or "none", []).append(host)
    where = "; ".join(f"{t} on {compress(sorted(hs))}" for t, hs in sorted(have.items()))
    what = f"of type {job.gpu_type!r}" if len(want) == 1 else f"of types {job.gpu_type!r} on each host"
    raise ConfigError(f"asks for GPUs {what}, but Slurm gives that to no host of the fabric model "
                      f"(GPU types there: {where or 'no hosts'}); handed to Slurm, which places it by type",
                      hint="Slurm matches GRES types exactly, case included (Gres=gpu:TYPE:N in slurm.conf); "
                           "'none' means Slurm declares those GPUs without a type (or with several)")


def lacking_features(expr: str, features: Mapping[str, tuple[str, ...]]) -> set[str]:
    """The hosts whose active features do not satisfy the constraint ``expr`` (``--constraint``, as Slurm
    reports it): a plain AND list (``a&b``, ``a,b``) or OR list (``a|b``) of feature names. Any other
    expression (brackets, counts ``a*2``, parentheses, ``!``, ANDs and ORs mixed), or an answer that gives no
    host a feature, keeps no host out: Slurm alone judges it (a pin it refuses is handed over,
    ``BadConstraints``). ConfigError when no host of the fabric model satisfies it."""
    expr = expr.strip()
    if not any(features.values()):  # a Slurm answer without node features: nothing to judge by
        return set()
    if not expr or any(c in expr for c in "[]()*!:") or ("|" in expr and ("&" in expr or "," in expr)):
        return set()
    anyof = "|" in expr
    want = {w.strip() for w in expr.replace(",", "&").replace("|", "&").split("&")}
    if "" in want:
        return set()
    lacking = {h for h, have in features.items()
               if not (want & set(have) if anyof else want <= set(have))}
    if len(lacking) < len(features):
        return lacking
    raise ConfigError(f"asks --constraint={expr!r}, but no host of the fabric model has those features now; "
                      "handed to Slurm, which places it where they are",
                      hint="see the nodes' features with sinfo -N -o '%N %b'")
