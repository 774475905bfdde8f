"""Under mpiexec: `save ROOT GIB` (every rank writes its dim-0 parts of the benchmark layout),
`restore ROOT` (every rank reads its part for the current world size, cold cache) or
`tiered ROOT GIB LOCAL` (two ranks per "node", each node saving to its own LOCAL/nI, then
draining to ROOT). Rank 0 prints one JSON line: seconds (slowest rank, between barriers), bytes,
and for `tiered` the seconds until every node has drained."""

from __future__ import annotations

import json
import sys
import time

import torch  # noqa: F401  (a training job has it loaded; keep its import out of the timings)
from mpi4py import MPI

from benchmarks.checkpoint.methods import drop_caches
from benchmarks.checkpoint.state import layout
from fabric_hpc.checkpoint import Shard, restore, save
from fabric_hpc.checkpoint.format import split_bounds, unflatten


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    cmd, root = sys.argv[1], sys.argv[2]
    extra = {}
    if cmd == "save":
        mine = _state(float(sys.argv[3]), rank, world)
        _barrier(comm)
        t0 = time.perf_counter()
        res = save(root, mine, step=1, comm=comm, layout={"dp": world})
        _barrier(comm)
        seconds, nbytes = time.perf_counter() - t0, res.nbytes
    elif cmd == "tiered":
        from fabric_hpc.checkpoint.tiers import TieredStore
        mine = _state(float(sys.argv[3]), rank, world)
        node = f"n{rank // 2}"
        with TieredStore(f"{sys.argv[4]}/{node}", root, comm=comm, node=node) as tiers:
            _barrier(comm)
            t0 = time.perf_counter()
            res = tiers.save(mine, step=1)
            _barrier(comm)
            seconds, nbytes = time.perf_counter() - t0, res.nbytes
            tiers.flush()
            _barrier(comm)
            extra = {"drained_seconds": time.perf_counter() - t0}
    else:
        if rank == 0:
            drop_caches()
        _barrier(comm)
        t0 = time.perf_counter()
        got = restore(root, rank=rank, world_size=world, as_torch=True, threads=int(sys.argv[3]) if len(sys.argv) > 3 else 4)
        _barrier(comm)
        seconds = time.perf_counter() - t0
        mine_bytes = sum(t.numel() * t.element_size() for t in _leaves(got))
        nbytes = comm.allreduce(mine_bytes)
    if rank == 0:
        print(json.dumps({"cmd": cmd, "world": world, "seconds": seconds, "bytes": nbytes, **extra}))


def _state(gib: float, rank: int, world: int) -> dict:
    import torch
    mine = {}
    for name, shape, dtype in layout(gib):
        if not shape:
            mine[name] = torch.zeros((), dtype=getattr(torch, dtype))
            continue
        lo, hi = split_bounds(shape[0], world, rank)
        data = torch.full((hi - lo, *shape[1:]), float(rank), dtype=getattr(torch, dtype))
        mine[name] = Shard(data, shape, 0, rank, world)
    return unflatten(mine)


def _barrier(comm) -> None:
    """A barrier that sleeps instead of spinning: MPICH busy-polls in Barrier, which on an
    oversubscribed node (8 ranks, 2 cores) steals the CPU from the ranks still working."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.0005)


def _leaves(d: dict) -> list:
    out = []
    for v in d.values():
        out += _leaves(v) if isinstance(v, dict) else [v]
    return out


if __name__ == "__main__":
    main()
