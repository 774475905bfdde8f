"""Run under mpiexec: `save DIR STEP` (every rank writes its split parts) or `restore DIR`
(every rank restores its part for the current world size and checks it against the truth)."""

from __future__ import annotations

import sys

from mpi4py import MPI

from fabric_hpc.checkpoint import Shard, open_checkpoint, restore, save
from tests.checkpoint.builders import SPLIT, assert_same, full_state


def _flat(d, prefix=""):
    for k, v in d.items():
        name = f"{prefix}/{k}" if prefix else k
        yield from _flat(v, name) if isinstance(v, dict) else [(name, v)]


def _nest(flat):
    out = {}
    for name, v in flat.items():
        node = out
        *ps, leaf = name.split("/")
        for p in ps:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    cmd, root = sys.argv[1], sys.argv[2]
    truth = dict(_flat(full_state(seed=7)))
    if cmd == "save":
        mine = {n: Shard.of(v, SPLIT[n], rank, world) if n in SPLIT else v for n, v in truth.items()}
        res = save(root, _nest(mine), step=int(sys.argv[3]), comm=comm, layout={"tp": world})
        assert res.path.name == f"step-{int(sys.argv[3]):010d}"
    else:
        got = dict(_flat(restore(root, rank=rank, world_size=world, as_torch=False)))
        want = {n: Shard.of(v, SPLIT[n], rank, world).data if n in SPLIT else v for n, v in truth.items()}
        assert_same(_nest(want), _nest(got))
        ckpt = open_checkpoint(root)
        assert ckpt.manifest.tensors["model/layers/1/w"].split.dim == 1
    comm.Barrier()
    if rank == 0:
        print(f"OK {cmd} world={world}")


if __name__ == "__main__":
    main()
