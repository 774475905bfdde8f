"""The Slurm client contract: what fabric-hpc reads from and does to a Slurm cluster.

Three backends implement :class:`SlurmClient` (``cli``, ``rest``, ``pyslurm``) and pass one
contract test suite (``tests/slurm_integration/test_client_contract.py``). Reads return the
frozen dataclasses below; every unexpected answer raises :class:`SlurmError` naming it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fabric_hpc.errors import ExternalError


class SlurmError(ExternalError):
    """Slurm refused a request or answered something fabric cannot trust (exit code 5)."""


#: The pending reasons of a held job: ``sbatch -H`` / ``scontrol hold`` (``uhold``), or an admin's hold.
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})
#: The pending reasons of a job waiting on its dependency (``sbatch --dependency``): ``Dependency`` while one
#: is unfulfilled (Slurm tests dependencies before the begin time, so a deferred job shows it too), and
#: ``DependencyNeverSatisfied`` once one can never be met (pending for ever unless ``kill_invalid_depend``).
#: Any update of the job (the agent's deferral too) resets the reason to ``None`` until Slurm's next
#: scheduling pass, so :attr:`Job.dependent` reads the job's dependency text as well.
DEPENDENCY_REASONS = frozenset({"Dependency", "DependencyNeverSatisfied"})
#: Pending reasons under which Slurm starts a job on no hosts at all: held, or waiting on a dependency.
BLOCKED_REASONS = HELD_REASONS | DEPENDENCY_REASONS
#: Pending reasons that come with priority 0 but are no hold. Slurm 25.11 keeps priority 0 under a few
#: reasons only (job_scheduler.c, node_scheduler.c, job_mgr.c; any other reason of a priority-0 job
#: becomes ``JobHeldAdmin``). All but one make Slurm start the job on no hosts until something changes
#: (job_independent(): the holds ``JobHeldAdmin``, ``JobHeldUser``, ``JobHoldMaxRequeue``,
#: ``ReservationDeleted``, ``ReservationInvalid``, and ``InvalidAccount``, ``InvalidQOS``,
#: ``BurstBufferOperation``): the agent reads them as held. ``BadConstraints`` is the exception: no
#: nodes satisfy the job as it stands (e.g. a ``ReqNodeList`` whose nodes lack its GRES type), and Slurm
#: re-evaluates it at the job's next update (job_mgr.c: "removing the bad constraints to reevaluate").
UNHELD_ZERO_PRIORITY_REASONS = frozenset({"BadConstraints"})
#: The pending reason of a job no nodes can satisfy (see :data:`UNHELD_ZERO_PRIORITY_REASONS`).
BAD_CONSTRAINTS = "BadConstraints"
#: Starts of the pending reasons under which Slurm starts a job on no hosts until a limit allows it
#: (src/common/job_state_reason.c): its partition's (``PartitionTimeLimit``, ``PartitionNodeLimit``,
#: ``PartitionDown``, ``PartitionInactive``, ``PartitionConfig``), its QOS's and association's
#: (``QOS…``, ``Assoc…``), its account's (``AccountNotAllowed``, ``Max…PerAccount``, ``Max…PerUser``).
LIMIT_REASON_STARTS = ("Partition", "QOS", "Assoc", "AccountNotAllowed", "AccountingPolicy", "MaxMemPerLimit")


def limit_reason(reason: str) -> bool:
    """Slurm holds the job back under a limit (:data:`LIMIT_REASON_STARTS`): no pin starts it."""
    return reason.startswith(LIMIT_REASON_STARTS) or (
        reason.startswith("Max") and reason.endswith(("PerAccount", "PerUser")))


@dataclass(frozen=True)
class Node:
    name: str
    state: str                      # base state, lower case: idle, mixed, allocated, down, drained, ...
    flags: tuple[str, ...] = ()     # DRAIN, NOT_RESPONDING, ...
    cpus: int = 0
    cpus_alloc: int = 0             # CPUs allocated to jobs
    gpus: int = 0
    gpu_type: str | None = None
    gpus_used: tuple[int, ...] = ()  # allocated GPU indices
    partitions: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    #: The active reservation Slurm names for the node ('' for none, or where the answer does not name it:
    #: 22.05's ``sinfo --json`` and pyslurm give only the ``RESERVED`` state flag).
    reservation: str = ""
    #: RealMemory and AllocMem in MiB (0: not said). Slurm allocates memory (AllocMem > 0) only where it is
    #: a consumable resource (``SelectTypeParameters=CR_*_Memory``).
    mem: int = 0
    mem_alloc: int = 0

    @property
    def reserved(self) -> bool:
        """In an active reservation (Slurm's ``RESERVED`` flag, or a reservation name): only the jobs of that
        reservation may start here."""
        return bool(self.reservation) or "RESERVED" in self.flags

    @property
    def usable(self) -> bool:
        """Up and not draining: new jobs may start here."""
        bad = {"down", "drained", "draining", "fail", "failing", "future", "unknown", "maint", "reboot"}
        return self.state not in bad and not ({"DRAIN", "NOT_RESPONDING", "DOWN", "FAIL"} & set(self.flags))


@dataclass(frozen=True)
class Job:
    job_id: int
    name: str
    state: str                                  # base state (PENDING, RUNNING, ...)
    reason: str = "None"
    comment: str = ""
    user: str = ""
    partition: str = ""
    account: str = ""                           # Slurm account ('' when the answer has none)
    qos: str = ""                               # QOS name ('' when the answer has none)
    nodes: int = 1                              # -N (minimum node count)
    gpus_per_node: int = 0
    gpus_per_job: int = 0                       # --gpus=N (TresPerJob; 0: none, or not read by the backend)
    cpus: int = 0                               # CPUs of the whole job (pending: the minimum asked; 0: unknown)
    gpu_type: str | None = None
    node_list: tuple[str, ...] = ()             # allocated nodes (running jobs)
    req_nodes: tuple[str, ...] = ()             # ReqNodeList
    exc_nodes: tuple[str, ...] = ()             # ExcNodeList (-x, and the hosts of the comment's exclude=)
    gpus: dict[str, tuple[int, ...]] = field(default_factory=dict)  # node -> allocated GPU indices
    submit_time: float = 0.0
    begin_time: float | None = None             # EligibleTime / begin (None: unknown)
    start_time: float | None = None
    flags: tuple[str, ...] = ()
    time_limit_min: int | None = None
    priority: int | None = None                 # Slurm's priority; 0: held, but see held (None: the answer had none)
    dependency: str = ""                        # Slurm's text, afterok:12(unfulfilled); '' once satisfied
    array_job_id: int = 0                       # ArrayJobId: the array's job id (0: not part of an array)
    het_job_id: int = 0                         # HetJobId: the heterogeneous job's leader (0: not one)
    reservation: str = ""                       # --reservation (comma-separated names; '' none)
    #: Slurm may requeue it (``--requeue``, or the site's ``JobRequeue=1``); False for ``--no-requeue`` or
    #: ``JobRequeue=0``: ``scontrol requeue`` is refused, so the agent never takes it for a spot victim.
    #: True where the answer does not say.
    requeue: bool = True
    #: ``--segment`` (topology/block, Slurm 24.05+; 0: none, or not read by the backend).
    segment_size: int = 0
    #: ``--spread-segments`` / ``--consolidate-segments`` (Slurm 25.11's job flags ``SPREAD_SEGMENTS``,
    #: ``CONSOLIDATE_SEGMENTS``; () none, or not read by the backend).
    segment_flags: tuple[str, ...] = ()
    #: ``--exclusive`` (Slurm's ``OverSubscribe=NO``, JSON ``shared: none``): it starts only on nodes where
    #: nothing else runs.
    exclusive: bool = False
    #: ``--mem`` in MiB per node (0: not said, or ``--mem=0``: all of a node's memory where memory is
    #: consumable, as Slurm 22.05-25.11 do without DefMemPerNode) and ``--mem-per-cpu`` (0: not said).
    mem_per_node: int = 0
    mem_per_cpu: int = 0
    #: ``--constraint`` as Slurm reports it (``fast&h100``; '' none): Slurm starts the job only on nodes whose
    #: active features satisfy it (plain AND / OR lists read by :func:`.view_hosts.lacking_features`).
    features: str = ""

    @property
    def grouped(self) -> str | None:
        """``array`` for a job array's record or task, ``het`` for a heterogeneous job's component, None
        for a plain job. Fabric places neither: Slurm copies one task's ``ReqNodeList`` to every task of an
        array, and pins nor hand-overs work on a het job's leader (docs/slurm.md, "Job arrays")."""
        if self.array_job_id:
            return "array"
        return "het" if self.het_job_id else None

    @property
    def fabric_marked(self) -> bool:
        """Marked for fabric placement by the job_submit plugin (``--comment=fabric[:options]``), and not an
        array or het job (:attr:`grouped`: the agent ignores those even when their comment says fabric)."""
        return self.fabric_comment and self.grouped is None

    @property
    def fabric_comment(self) -> bool:
        """The comment says fabric (``fabric``, ``fabric:options``), whatever the job is."""
        return self.comment == "fabric" or self.comment.startswith("fabric:")

    @property
    def fabric_options(self) -> str:
        """The request options after ``fabric:`` (``within=leaf,switches=1``), '' when none."""
        return self.comment.partition(":")[2] if self.fabric_comment else ""

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    @property
    def held(self) -> bool:
        """Pending and held: Slurm starts it only once it is released (``scontrol release``). Priority 0
        is a hold (``sbatch -H``, ``scontrol hold``, a requeue-hold, a failed launch) unless the reason
        is one Slurm zeroes the priority for without a hold (:data:`UNHELD_ZERO_PRIORITY_REASONS`:
        ``BadConstraints``); the reason (JobHeldUser, JobHeldAdmin) counts too where no priority was read."""
        if not self.pending:
            return False
        if self.reason in HELD_REASONS:
            return True
        return self.priority == 0 and self.reason not in UNHELD_ZERO_PRIORITY_REASONS

    @property
    def dependent(self) -> bool:
        """Pending on a dependency not yet satisfied: Slurm starts it then only, whatever hosts are free.
        Its reason (``Dependency``, ``DependencyNeverSatisfied``), or its dependency text, which Slurm empties
        once the dependency is satisfied: the reason alone reads ``None`` after any update of the job
        (``scontrol update``, the agent's deferral) until Slurm's next scheduling pass sets it again."""
        return self.pending and (self.reason in DEPENDENCY_REASONS or bool(self.dependency))

    @property
    def blocked(self) -> str | None:
        """Why Slurm will not start this pending job now on any hosts: ``held`` (:attr:`held`; a held job
        with a dependency shows the hold), ``dependency`` (:attr:`dependent`); None when nothing blocks it."""
        if self.held:
            return "held"
        return "dependency" if self.dependent else None

    @property
    def active(self) -> bool:
        from fabric_hpc.slurm.parse import ACTIVE_STATES

        return self.state in ACTIVE_STATES


def queued(jobs: Iterable[Job]) -> list[Job]:
    """``jobs`` without the finished ones (squeue's default: src/squeue/print.c keeps pending, running,
    suspended, completing and staging-out jobs), so every backend's ``jobs()`` lists the same: slurmrestd's
    ``GET /jobs`` and pyslurm's ``Jobs.load()`` also give the jobs that ended within MinJobAge."""
    from fabric_hpc.slurm.parse import FINAL_STATES

    return [j for j in jobs if j.state not in FINAL_STATES]


#: Reservation flags under which the agent still keeps other jobs off the reservation's nodes: none. Slurm
#: 25.11 (reservation.c, ``job_test_resv``) keeps a job that names no reservation off the nodes of every
#: whole-node reservation whose time overlaps the job's (now to now + its time limit), whatever its flags:
#: ``FLEX`` lets the reservation's own jobs run outside it, ``OVERLAP`` lets reservations overlap each other,
#: ``IGNORE_JOBS`` ignores running jobs when it is created, ``MAINT`` marks the nodes for accounting (and, on
#: a whole partition, holds its jobs back); none lets other jobs in. Only ``max_start_delay`` with a job's
#: ``--signal=R:`` does, and partial-node reservations (``CoreCnt``, ``TRES``) leave the rest of a node to
#: others: the agent keeps those nodes out too (conservative: Slurm may still start a job there).
OVERLAPPING_FLAGS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reservation:
    """A Slurm reservation (``scontrol show reservation``), active or still to come."""

    name: str
    start: float                    # UNIX time it starts (or started)
    end: float                      # UNIX time it ends
    nodes: tuple[str, ...] = ()     # its nodes, expanded
    flags: tuple[str, ...] = ()     # MAINT, FLEX, IGNORE_JOBS, ... (upper case; Slurm's names, pyslurm's too)

    def keeps_out(self, start: float, end: float | None) -> bool:
        """Slurm keeps a job that does not name it off its nodes when it runs from ``start`` to ``end`` (None:
        no time limit, runs past any start): the two times overlap and no flag lets others in."""
        if OVERLAPPING_FLAGS & set(self.flags) or self.end <= start:
            return False
        return end is None or self.start < end


@runtime_checkable
class ReadsReservations(Protocol):
    """A client that reads Slurm's reservations (every backend of fabric does; a replay client may not)."""

    def reservations(self) -> tuple[list[Reservation], dict[str, str]]:
        """(the reservations Slurm lists, {name: why it was ignored} for records fabric cannot trust:
        an unreadable time, an end before its start, a node list that does not parse)."""
        ...


@runtime_checkable
class RestAddressed(Protocol):
    """A client that talks to slurmrestd at ``url`` (the rest backend): messages name that address."""

    url: str


class SlurmClient(abc.ABC):
    """Reads and actions on one Slurm cluster. Backends: cli, rest, pyslurm (see ``open_client``)."""

    backend: str = "?"

    @abc.abstractmethod
    def nodes(self) -> list[Node]:
        """Every node with its state and allocated GPU indices."""

    @abc.abstractmethod
    def jobs(self) -> list[Job]:
        """The jobs in Slurm's queue: pending and active (running, suspended, completing), as ``squeue``
        lists them by default (:func:`queued`); a finished job Slurm still knows only through :meth:`job`."""

    def job(self, job_id: int) -> Job:
        """One job; :class:`~fabric_hpc.errors.NotFoundError` when Slurm does not know it. This default
        searches :meth:`jobs`, so it finds no finished job: the backends (cli, rest, pyslurm, replay) ask
        Slurm for the one job and find those too."""
        from fabric_hpc.errors import NotFoundError

        for j in self.jobs():
            if j.job_id == int(job_id):
                return j
        raise NotFoundError(f"Slurm knows no job {job_id}", hint="squeue shows the jobs Slurm knows")

    @abc.abstractmethod
    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        """Submit a batch script (sbatch options in ``args``); returns the job id."""

    @abc.abstractmethod
    def update(self, job_id: int, **fields: str) -> None:
        """``scontrol update JobId=… Key=Value``: e.g. ``ReqNodeList="n[1-2]"``, ``StartTime="now"``."""

    @abc.abstractmethod
    def hold(self, job_id: int) -> None: ...

    @abc.abstractmethod
    def release(self, job_id: int) -> None: ...

    @abc.abstractmethod
    def requeue(self, job_id: int) -> None:
        """Requeue a job that still runs; one that is ending or has ended is left alone (Slurm would run
        it again: :data:`~fabric_hpc.slurm.parse.RUNNING_STATES`)."""

    @abc.abstractmethod
    def cancel(self, job_id: int) -> None: ...

    # -- the two actions of the agent, built on update -----------------------------------
    def place(self, job_id: int, hosts: Sequence[str]) -> None:
        """Pin a pending job to exactly ``hosts`` and make it eligible now (one atomic update)."""
        from fabric_hpc.hostlist import compress

        self.update(job_id, ReqNodeList=compress(list(hosts)), StartTime="now")

    def unpin(self, job_id: int) -> None:
        """Clear a pending job's ``ReqNodeList`` (Slurm may then place it on any nodes)."""
        self.update(job_id, ReqNodeList="")

    def defer(self, job_id: int, seconds: int) -> None:
        """Keep a pending job ineligible for ``seconds`` more (the fallback timer, renewed)."""
        self.update(job_id, StartTime=f"now+{int(seconds)}")

    def defer_many(self, job_ids: Sequence[int], seconds: int) -> None:
        """:meth:`defer` for many jobs (backends may batch it)."""
        for job_id in job_ids:
            self.defer(job_id, seconds)
