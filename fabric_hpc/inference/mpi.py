"""MPI coordination: one process per GPU, static longest-first sharding, ordered teardown.

Launch with ``mpiexec -n K fabric infer run ...`` (or ``srun --mpi=pmi2``). Without an MPI
launcher in the environment the run is a single rank and mpi4py is never imported.

Sharding: every rank scans the input (it is on a shared filesystem) and computes the same
assignment: the not-yet-done items sorted by estimated tokens (prompt + max_new_tokens) longest
first, each given to the least-loaded rank (greedy LPT, ties to the lower rank). No item is
dropped: the assignment is a partition of the remaining ids.

Teardown: a rank whose run fails stops its intake, lets its writer commit and journal what it
holds, prints its error once (``error: rank N: ...``; a rank > 0 first waits up to
``SAME_ERROR_WAIT_S`` for rank 0's FATAL and prints nothing when rank 0 failed with the same
message: an error every rank meets is printed once, by rank 0), sends ``FATAL`` (with its exit code) to
every other rank, waits (at most ``ACK_WAIT_S``) for their ``ACK`` -- each peer stops intake and
flushes its journal before acknowledging; a peer that failed itself meanwhile (its own ``FATAL``)
counts as acknowledged. The exit code is the CLI's for the error (3 bad input, 5 external
failure, ...; README.md), and the launcher must return it:

- under ``mpiexec`` (hydra) the failing rank then calls ``MPI_Abort(code)``, which ends every rank
  and is what ``mpiexec`` returns (ranks that exit by themselves race hydra, which kills the
  others on the first non-zero exit and may then report their signal);
- under ``srun`` every rank exits by itself with the code: each peer once its ``ACK`` was received
  (a synchronous send), the failing rank once every peer answered. ``MPI_Abort`` there makes
  slurmstepd SIGKILL the other tasks, and srun returns the highest task status, 137. With
  ``--kill-on-bad-exit=1`` (infer_batch.sbatch) srun still returns the code, measured on Slurm
  22.05 and 25.11: it signals the ranks left after the first non-zero exit, but each is then in
  its teardown, which ignores SIGTERM and exits with the code. A peer that does not answer within
  ``ACK_WAIT_S`` gets ``MPI_Abort`` under either launcher.

Peers poll for ``FATAL`` from the main thread every 0.1 s. A rank killed outright (``kill -9``, the
OOM killer) or one that exits before ``MPI_Init`` cannot tell the others, and the rendezvous has
no deadline (the last one waits for the slowest rank's share): ``mpiexec`` ends the rest, ``srun``
only with ``--kill-on-bad-exit=1`` (then 137, or 143 for an exit before ``MPI_Init``; docs/inference.md,
"When a rank fails"). Journals are safe either way and a rerun resumes.

Transport under ``srun --mpi=pmi2``: MPI carries only control messages here, so MPICH is steered
to its OFI netmod over TCP (``MPIR_CVAR_CH4_NETMOD=ofi``, ``FI_PROVIDER=tcp``, each only when
unset). MPICH's default UCX netmod publishes a multi-kilobyte address through PMI-1 in segments of
up to ~1 KB; Slurm 22.05's PMI server reads a request in one 1024-byte ``read`` ("TODO: read until
newline" in ``pmi1.c``), so a segment that encodes longer is split and ``MPI_Init`` fails at
random. The OFI TCP address is 16 bytes: one short request.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fabric_hpc.errors import EXIT_EXTERNAL, ConfigError, ExternalError, FabricError, exit_code_for
from fabric_hpc.events import emit

__all__ = ["ACK_WAIT_S", "MpiContext", "PeerFailed", "exit_code_of", "mpi_context", "reported",
           "same_engine_everywhere", "shard_longest_first"]

TAG_FATAL, TAG_ACK = 7701, 7702
ACK_WAIT_S = 2.5
SAME_ERROR_WAIT_S = 0.5  # a failing rank > 0 waits this long for rank 0's FATAL before it prints
TEARDOWN_LIMIT_S = SAME_ERROR_WAIT_S + ACK_WAIT_S + 2.0  # a failing rank's teardown never takes longer
_LAUNCH_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "HYDI_CONTROL_FD",
                "MPI_LOCALRANKID")


class PeerFailed(ExternalError):
    """Another rank (``source``) reported a fatal error; this rank is tearing down and exits with
    that rank's exit code."""

    def __init__(self, message: str, *, source: int, code: int = EXIT_EXTERNAL) -> None:
        super().__init__(message)
        self.source = source
        self.exit_code = code


def reported(exc: BaseException) -> BaseException:
    """``exc`` as the CLI reports it on one rank (``fabric_hpc.cli.main``): an OSError as
    :func:`fabric_hpc.inputs.os_error` words it (the file, the reason, a fix; exit 3 or 5), Ctrl-C as
    ``aborted``; any other error as it is."""
    if isinstance(exc, OSError) and not isinstance(exc, FabricError):
        from fabric_hpc.inputs import os_error

        return os_error(exc)
    if isinstance(exc, KeyboardInterrupt) and not str(exc).strip():
        return FabricError("aborted")
    return exc


def exit_code_of(exc: BaseException) -> int:
    """The exit code the CLI gives ``exc`` (``fabric_hpc.cli.main``): a FabricError's own, an
    OSError's as :func:`reported` maps it (3 or 5), 130 for an interrupt, 143 for SIGTERM (129: SIGHUP),
    else 1."""
    if isinstance(exc, KeyboardInterrupt):
        code = getattr(exc, "exit_code", None)  # the CLI's Terminated: 143 (SIGTERM) or 129 (SIGHUP)
        return code if isinstance(code, int) else 130
    return exit_code_for(reported(exc))


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (at most 500 characters), or its type's name when the
    message is empty (``Terminated()``, ``KeyboardInterrupt()``, ``MemoryError()``)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:500]


def _hold_sigterm() -> None:
    """Ignore SIGTERM for the rest of this process (a teardown that always ends in :func:`_exit`,
    within ``ACK_WAIT_S`` and a few seconds): a second signal -- scancel signals every rank, hydra
    forwards its own -- must not unwind the teardown half-way and leave the rank alive (a Python
    exit runs MPI_Finalize, which waits for peers that never come)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _exit_later(code: int) -> None:
    """End this process with ``code`` after ``TEARDOWN_LIMIT_S`` even while its main thread is stuck in an
    MPI call: under ``srun`` MPICH's OFI/TCP send to a rank killed outright can block for good (seen in
    ``isend`` of FATAL, ~1 run in 15), and only slurmstepd's SIGKILL after ``KillWait`` (30 s) ended the
    rank. mpi4py releases the GIL inside MPI calls, so this timer thread runs."""
    import threading

    timer = threading.Timer(TEARDOWN_LIMIT_S, _exit, args=(code,))
    timer.daemon = True
    timer.start()


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def shard_longest_first(items: Iterable[tuple[str, int]], size: int) -> list[set[str]]:
    """Partition ``(id, estimated tokens)`` over ``size`` ranks, longest first, least loaded."""
    order = sorted(items, key=lambda p: (-p[1], p[0]))
    heap = [(0, r) for r in range(size)]
    shards: list[set[str]] = [set() for _ in range(size)]
    for rid, cost in order:
        load, r = heapq.heappop(heap)
        shards[r].add(rid)
        heapq.heappush(heap, (load + cost, r))
    return shards


def _local_rank() -> int:
    for var in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMI_LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


class MpiContext:
    """Rank, size and the teardown protocol; a single-rank context when not under MPI."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.local_rank = _local_rank() if comm is not None else 0
        #: called as ``last_words(rank, error, exit_code)`` before a teardown ends this rank's
        #: process (the CLI's ``--json`` error document); its own failure never stops the teardown
        self.last_words: Callable[[int, BaseException, int], None] | None = None

    def bcast(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0) if self.comm is not None else value

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        return self.comm.allgather(value) if self.comm is not None else [value]

    def allreduce_sum(self, value: int) -> int:
        return self.comm.allreduce(value) if self.comm is not None else value

    def rendezvous(self) -> None:
        """Wait until every rank got here, answering a peer's FATAL meanwhile (raises
        :class:`PeerFailed`): call before a blocking collective that a failed rank never reaches,
        where a waiting rank could neither acknowledge nor exit with the failing rank's code."""
        if self.comm is None:
            return
        req = self.comm.Ibarrier()
        while not req.Test():
            self.poll()
            time.sleep(0.01)

    def poll(self) -> None:
        """Raise :class:`PeerFailed` if another rank sent FATAL (call from the main thread)."""
        if self.comm is None:
            return
        from mpi4py import MPI

        status = MPI.Status()
        if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_FATAL, status=status):
            src = status.Get_source()
            code, reason = self.comm.recv(source=src, tag=TAG_FATAL)
            raise PeerFailed(f"rank {src} failed: {reason}", source=src, code=code)

    def acknowledge(self, failed: PeerFailed) -> None:
        """After a peer's FATAL (this rank's journal flushed): ACK it, then exit with its code."""
        if self.comm is None:
            return
        _hold_sigterm()
        try:
            req = self.comm.issend(self.rank, dest=failed.source, tag=TAG_ACK)  # completes once received
            self._say(failed, failed.exit_code)
            if by_srun(os.environ):  # the failing rank exits by itself too (module docstring)
                deadline = time.monotonic() + ACK_WAIT_S
                while not req.Test() and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                self._reqs = [req]
                time.sleep(ACK_WAIT_S + 5.0)  # MPI_Abort from the failing rank ends this process
        finally:
            _exit(failed.exit_code)  # whatever failed above: this rank never outlives the teardown

    def fatal(self, exc: BaseException) -> None:
        """Ordered teardown after a local failure (journal already flushed): the error printed
        once, FATAL to every peer, their ACKs, exit with the CLI's code (see the module docstring).
        Returns only when not under MPI (the caller raises)."""
        if self.comm is None:
            return
        _hold_sigterm()
        code = exit_code_of(exc)
        _exit_later(code)
        exc = reported(exc)  # an OSError: the file, the reason and a fix, as one rank says it
        try:
            message = str(exc).strip() or first_line(exc)
            emit("infer.fatal", rank=self.rank, error=first_line(exc), exit_code=code)
            rank0 = None if self.rank == 0 else self._fatal_of_rank0(time.monotonic() + SAME_ERROR_WAIT_S)
            if rank0 != message[:500]:  # rank 0 printed this very error (a config every rank reads): once
                sys.stderr.write(f"error: rank {self.rank}: {message}\n")
                sys.stderr.flush()
            self._say(exc, code)
            self._reqs = [self.comm.isend((code, message[:500]), dest=r, tag=TAG_FATAL)
                          for r in range(self.size) if r != self.rank]
            if self._answered(time.monotonic() + ACK_WAIT_S, set() if rank0 is None else {0}) \
                    and by_srun(os.environ):
                _exit(code)  # every peer exits with ``code`` too: srun returns it (module docstring)
            self.comm.Abort(code)
        finally:
            _exit(code)  # MPICH's MPI_Abort may return before the launcher kills this process; and
            # whatever failed above, this rank never outlives its teardown

    def _say(self, exc: BaseException, code: int) -> None:
        if self.last_words is not None:
            try:
                self.last_words(self.rank, exc, code)
            except Exception:  # noqa: BLE001 - the teardown must go on (stdout closed, ...)
                pass

    def _fatal_of_rank0(self, deadline: float) -> str | None:
        """Rank 0's FATAL reason if it arrives before ``deadline`` (received: rank 0 has answered).
        Rank 0 prints its error before it sends FATAL, so a peer that failed the same way stays
        silent; a peer sends its own FATAL only after this, so no MPI_Abort ends it before it printed."""
        from mpi4py import MPI

        while True:
            if self.comm.Iprobe(source=0, tag=TAG_FATAL, status=MPI.Status()):
                return str(self.comm.recv(source=0, tag=TAG_FATAL)[1])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def _answered(self, deadline: float, already: set[int]) -> bool:
        """Whether every peer sent ACK (or its own FATAL: it failed too) before ``deadline``
        (``already``: those that did before)."""
        from mpi4py import MPI

        waiting = set(range(self.size)) - {self.rank} - already
        while waiting and time.monotonic() < deadline:
            status = MPI.Status()
            for tag in (TAG_ACK, TAG_FATAL):
                if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=tag, status=status):
                    self.comm.recv(source=status.Get_source(), tag=tag)
                    waiting.discard(status.Get_source())
                    break
            else:
                time.sleep(0.01)
        return not waiting


def same_engine_everywhere(ctx: MpiContext, fields: Mapping[str, Any]) -> None:
    """After every rank built its engine: ConfigError on every rank where the ranks' engines differ in
    ``fields`` (their limits and vocabulary size): each would accept (dead-letter) other items, cost
    them otherwise and share out another list, so items would be lost or run twice."""
    if ctx.size == 1:
        return
    every = ctx.allgather((dict(fields), os.uname().nodename))
    differ = sorted(k for k in fields if len({repr(f.get(k)) for f, _ in every}) > 1)
    if not differ:
        return
    shown = "; ".join(f"rank {r} on {node}: " + ", ".join(f"{k}={f.get(k)}" for k in differ)
                      for r, (f, node) in enumerate(every[:8]))[:1000]
    raise ConfigError(f"ranks run different engines ({shown}{'; ...' if len(every) > 8 else ''}): "
                      "they would accept different items and share out different lists",
                      hint="give every rank the same --engine-config and engine directory (the same "
                           "build on every node)")


def under_mpi() -> bool:
    return any(v in os.environ for v in _LAUNCH_VARS)


def by_srun(env: Mapping[str, str]) -> bool:
    """Whether the ranks were launched by ``srun --mpi=pmi2`` (Slurm's PMI server), not by hydra
    (``mpiexec``, also when it runs inside a Slurm job: it sets ``HYDI_CONTROL_FD``)."""
    return "PMI_FD" in env and "SLURM_STEP_ID" in env and "HYDI_CONTROL_FD" not in env


def slurm_pmi_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The transport settings to add under Slurm's PMI server (see the module docstring)."""
    if not by_srun(env):
        return {}
    wanted = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}
    return {k: v for k, v in wanted.items() if k not in env}


def check_mpi_library() -> None:
    """Load mpi4py's MPI library without starting MPI (no ``MPI_Init``): the error each rank would
    give at its start (mpi4py missing, or its MPI library not loadable), found before any rank
    starts. Ends this process's use of MPI: only for a check run in a process of its own."""
    from fabric_hpc.extras import require

    needed_for = "a launch under MPI (mpiexec/srun)"
    mpi4py = require("mpi4py", extra="mpi", needed_for=needed_for)
    mpi4py.rc.initialize = mpi4py.rc.finalize = False
    require("mpi4py.MPI", extra="mpi", needed_for=needed_for)


def mpi_context() -> MpiContext:
    """The world communicator when launched by mpiexec/srun, else a single-rank context."""
    if not under_mpi():
        return MpiContext(None)
    os.environ.update(slurm_pmi_defaults(os.environ))  # read by MPI_Init, which the import runs
    from fabric_hpc.extras import require

    MPI = require("mpi4py.MPI", extra="mpi", needed_for="a launch under MPI (mpiexec/srun)")
    return MpiContext(MPI.COMM_WORLD)
