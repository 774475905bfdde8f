"""``fabric place``: choose GPUs for a gang and explain the choice.

``fabric place --topology T [--state S] --request 'nodes=4,gpus=8,within=leaf' [--solver cpsat]``
prints the placement (hosts, GPUs, cost breakdown, optimality, time) or, when it cannot be placed,
the binding constraint (exit code 4). ``--commit JOB`` also writes the allocation into the state
file. The placement benchmark is not part of the installed package: run
``python -m benchmarks.placement`` from a checkout (docs/placement.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from fabric_hpc.cli.main import one_line
from fabric_hpc.cli.output import json_option, render, table
from fabric_hpc.cli.params import FiniteFloat, InputFile
from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.contract import SOLVE_OPTION_BOUNDS

_TIME, _WORKERS = SOLVE_OPTION_BOUNDS["time_limit_s"], SOLVE_OPTION_BOUNDS["workers"]  # the API's bounds


@click.command()
@click.option("--topology", "-t", "topology", help="Fabric YAML file, a fabric shipped with "
              "fabric-hpc by name (gb200-nvl72-8r), or generator (superpod:sus=4).")
@click.option("--state", "-s", "state_path", type=InputFile(what="state file"),
              help="Cluster state JSON (default: everything free).")
@click.option("--request", "-r", "request", help="e.g. 'nodes=4,gpus=8,within=leaf' (see docs/placement.md).")
@click.option("--solver", type=click.Choice(["cpsat", "greedy", "slurm-tree", "slurm-block"]), default="cpsat",
              show_default=True)
@click.option("--time-limit", type=FiniteFloat(*_TIME[:2], lo_open=True), default=1.0, show_default=True,
              help=f"CP-SAT budget in (0, {_TIME[1]:g}]: deterministic time units (answers do not depend on the "
                   "machine's load; one unit is about 1-2.5 s of CPU, docs/placement.md).")
@click.option("--workers", type=click.IntRange(*_WORKERS[:2]), default=1, show_default=True,
              help="CP-SAT workers (1 is deterministic).")
@click.option("--commit", "commit_job", help="Allocate the placement to this job id in --state.")
@json_option
def group(topology: str | None, state_path: str | None, request: str | None, solver: str,
          time_limit: float, workers: int, commit_job: str | None, as_json: bool) -> None:
    """Place a gang of GPUs on the fabric (topology-aware, explained).

    The placement benchmark runs from a checkout: python -m benchmarks.placement
    """
    example = "e.g. -r 'nodes=4,gpus=8,within=leaf' or -r 'gpus=8' (docs/placement.md)"
    if request is not None and not request.strip():
        raise ConfigError(f"--request {request!r} is empty: it names no GPUs or nodes to place", hint=example)
    if topology is not None and not topology.strip():
        raise ConfigError(f"--topology {topology!r} is empty: it names no fabric",
                          hint="e.g. -t superpod:sus=4 or -t dgx-h100-superpod-4su (a shipped fabric)")
    if not topology or not request:
        missing = " and ".join(f for f, v in (("--topology", topology), ("--request", request)) if not v)
        raise ConfigError(f"fabric place needs {missing}",
                          hint="e.g. fabric place -t dgx-h100-superpod-4su -r 'nodes=4,gpus=8,within=leaf' "
                               "(a shipped fabric, a fabric file, or a generator: -t superpod:sus=4)")
    from fabric_hpc.topology import open_fabric

    fab = open_fabric(topology)
    if commit_job is not None:
        if not commit_job.strip() or any(ord(c) < 32 or ord(c) == 127 for c in commit_job):
            raise ConfigError(f"--commit {commit_job!r}: a job id must be non-empty, without control "
                              "characters", hint="name the job the placement is for, e.g. --commit job-42")
        if state_path is None:
            raise ConfigError("--commit needs --state (the file to write the allocation to)",
                              hint="add -s state.json (a missing file is not created: "
                                   "write {\"version\": 1} to start one)")
        with _state_lock(state_path):  # read, place and write as one step: parallel commits never share a GPU
            placement = _place(fab, state_path, request, solver, time_limit, workers, commit_job)
    else:
        placement = _place(fab, state_path, request, solver, time_limit, workers, None)
    from fabric_hpc.placement.request import parse_request

    req = parse_request(request, source="--request")
    stages = _stages(fab, placement, req.pp or 1)
    sends = _stage_sends_ms(fab, placement, req.tp or 1, req.pp or 1)
    doc = placement.to_dict() | ({"pipeline_stages": stages, "stage_sends_ms": sends} if stages else {})
    render(as_json, doc, lambda con: _human(con, placement, stages, sends))


@contextmanager
def _state_lock(state_path: str) -> Iterator[None]:
    """Exclusive lock beside the state file (``.NAME.lock``, its link followed) while it is committed to.
    The lock is shared as the state file is (its read/write bits: a 0666 state file in a directory
    several users write gets a 0666 lock), so each of them can commit in turn."""
    import os
    from pathlib import Path

    from fabric_hpc.pidlock import PidLock

    real = Path(os.path.realpath(state_path))
    try:
        mode = (os.stat(real).st_mode & 0o666) | 0o600
    except OSError:  # missing: loading it says so
        mode = 0o644
    lock = PidLock(real.parent / f".{real.name}.lock", mode=mode,
                   busy=lambda pid: f"another `fabric place --commit` (pid {pid}) has held {real} for 60 s",
                   hint="wait for it to finish, or stop it")
    try:
        _shared_lock_file(lock.path, mode)
        lock.acquire(wait_s=60)
    except PermissionError as exc:
        raise _lock_denied(lock.path, real, mode, exc) from None
    except OSError as exc:
        from fabric_hpc.inputs import os_error

        raise os_error(exc, "cluster state lock", lock.path) from None
    try:
        yield
    finally:
        lock.release()


def _shared_lock_file(path, mode: int) -> None:
    """Create the lock file (never through a link) with ``mode`` exactly (not less the umask); one
    this user owns gets that mode again (an older fabric created it 0644)."""
    import os

    from fabric_hpc.events import open_regular

    fd = open_regular(path, os.O_RDONLY | os.O_CREAT, mode)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _lock_denied(path, state, mode: int, exc: OSError) -> ConfigError:
    import os
    import pwd

    try:
        st = os.stat(path)
        owner = pwd.getpwuid(st.st_uid).pw_name
        what = f"is {owner}'s, mode {st.st_mode & 0o777:o}"
    except (OSError, KeyError):
        what = "cannot be opened"
    return ConfigError(f"cluster state lock {str(path)!r}: {exc.strerror or 'permission denied'}: it {what}, "
                       f"and this user may not take it to commit to {str(state)!r}",
                       hint=f"its owner runs `chmod {mode:o} {path}` (the state file's sharing), or anyone "
                            f"who may write the directory runs `rm {path}` (the next commit creates it "
                            "shared)")


def _place(fab, state_path: str | None, request: str, solver: str, time_limit: float, workers: int,
           commit_job: str | None):
    """Load the state, place, and (``commit_job``) write the allocation back."""
    from fabric_hpc.placement import ClusterState, SolveOptions, parse_request, place

    state = ClusterState.load(fab, state_path) if state_path is not None else ClusterState(fab)
    for note in state.notes:  # on stderr: --json stays one document
        click.echo(one_line(f"note: {note}"), err=True)
    if commit_job and state.holds(commit_job):  # allocate() would add to it: one job, two placements
        raise ConfigError(f"job {commit_job!r} already holds {len(state.job_gpus(commit_job))} GPUs in {state_path}",
                          hint="commit under a new job id, or remove that job from the state file first")
    req = parse_request(request, source="--request")  # the library names its argument; the CLI, the flag
    options = SolveOptions(time_limit_s=time_limit, workers=workers)
    placement = place(fab, state, req, solver=solver, options=options)
    if commit_job:
        state.allocate(commit_job, placement.gpus, **req.parallel_meta())  # tp/pp, as the scheduler records
        state.save(state_path)
    return placement


def _stages(fab, placement, pp: int) -> list[list[str]]:
    """Each pipeline stage's GPUs in ring order (``pp`` > 1; else none)."""
    if pp <= 1:
        return []
    import numpy as np

    from fabric_hpc.placement.parallel import pipeline_stages

    idx = np.array(sorted(fab.gpu_pos[g] for g in placement.gpus), np.int64)
    return [[fab.gpus[int(i)] for i in stage] for stage in pipeline_stages(fab, idx, pp)]


def _stage_sends_ms(fab, placement, tp: int, pp: int) -> float | None:
    """Milliseconds for every stage boundary's pairs to exchange one micro-batch's activations at
    once (``ACTIVATION_BYTES / tp`` each way per pair, alone on the fabric): ``e(P)`` of the step
    model (:mod:`fabric_hpc.placement.step`), which the cost weighs as ``comm_pp``
    (docs/placement.md). None without stages; -1 when a boundary cannot send (hosts without a
    NIC: JSON has no infinity)."""
    if pp <= 1:
        return None
    import numpy as np

    from fabric_hpc.placement.parallel import ACTIVATION_BYTES, slowest_alone, stage_pairs

    idx = np.array(sorted(fab.gpu_pos[g] for g in placement.gpus), np.int64)
    ms = 1000 * slowest_alone(fab, stage_pairs(fab, idx, tp, pp), ACTIVATION_BYTES / tp)
    return round(ms, 4) if np.isfinite(ms) else -1.0  # -1: a boundary between hosts without a NIC


def _human(con, placement, stages: list[list[str]], sends: float | None = None) -> None:
    from fabric_hpc.hostlist import compress

    status = {True: "optimal", False: "not proven optimal", None: "heuristic"}[placement.optimal]
    con.print(f"{placement.solver}: {len(placement.gpus)} GPUs on {len(placement.hosts)} host(s) "
              f"{compress(placement.hosts)}; cost {placement.cost:.3f} ({status}, {placement.time_s * 1000:.1f} ms)")
    rows = [(h, ",".join(g.split("/gpu")[1] for g in placement.gpus if g.startswith(h + "/"))) for h in placement.hosts]
    con.print(table("GPUs", ["host", "local GPU indices"], rows))
    con.print(table("cost breakdown", ["term", "value"], [(k, f"{v:.3f}") for k, v in placement.breakdown.items()]))
    con.print(table("domains spanned", ["level", "domains"], list(placement.domains.items())))
    for s, members in enumerate(placement.slices):
        con.print(f"slice {s}: {compress(members)}")
    for s, stage in enumerate(stages):
        per_host: dict[str, int] = {}
        for g in stage:
            per_host[g.split("/")[0]] = per_host.get(g.split("/")[0], 0) + 1
        con.print(f"pipeline stage {s}: " + ", ".join(f"{h} ({k} GPU{'s' * (k != 1)})" for h, k in per_host.items()))
    if sends is not None and sends < 0:
        con.print("stage-to-stage sends: cannot run (a stage boundary between hosts without a NIC)")
    elif sends is not None:
        con.print(f"stage-to-stage sends: {sends:.3f} ms per micro-batch (48 MiB of activations / tp per pair, "
                  "both ways, every boundary at once; in the cost as comm_pp, by the sends' share of a step)")
    for note in placement.notes:
        con.print(f"note: {note}")
