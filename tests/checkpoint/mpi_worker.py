"""Run under mpiexec: `save DIR STEP` (every rank writes its split parts) or `restore DIR [W,...]`
(every rank restores its part for the world size W and checks it against the truth: for each W
of the list, ranks 0..W-1 of this launch; default: the launch's size; restore takes no
communicator, so one launch of max(W) ranks checks every world of the list);
`save-mesh DIR STEP AxB` / `restore-mesh DIR AxB|-|-N,...` do the same for tensors split over two
dimensions (each rank holds one block of an AxB mesh; `-` restores along the first dim on the
launch's ranks, `-N` on N of them). `tiered-parts DIR S,...` saves the steps S in turn."""

from __future__ import annotations

import sys

import numpy as np
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


MESH_SPLIT = {"model/layers/0/w": (0, 1), "model/embed": (1, 0), "optim/m": (0, 1)}


def _mesh_parts(name, rank, mesh, world):
    """(dims, coords, mesh) of this rank's block of tensor ``name``, or None if not split."""
    if name not in MESH_SPLIT:
        return None
    if mesh is None:
        return MESH_SPLIT[name][:1], (rank,), (world,)
    coords = tuple(int(c) for c in np.unravel_index(rank, mesh))
    return MESH_SPLIT[name], coords, mesh


def _mesh_spec(spec: str, size: int) -> tuple[tuple[int, ...] | None, int]:
    """(mesh, world) of ``AxB`` (world A*B), ``-`` (first dim, the launch's ranks) or ``-N``."""
    if spec.startswith("-"):
        return None, int(spec[1:] or size)
    mesh = tuple(int(x) for x in spec.split("x"))
    return mesh, int(np.prod(mesh))


def mesh_main(cmd, root, mesh, world) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    truth = dict(_flat(full_state(seed=11, scale=3)))
    cut = {n: (Shard.of(v, *p) if (p := _mesh_parts(n, rank, mesh, world)) else v) for n, v in truth.items()}
    if cmd == "save-mesh":
        save(root, _nest(cut), step=int(sys.argv[3]), comm=comm, layout={"mesh": list(mesh)})
        m = open_checkpoint(root).manifest
        assert m.format_version == 2 and m.tensors["model/embed"].split.dims == [1, 0]
    else:
        got = dict(_flat(restore(root, rank=rank, world_size=world, mesh=mesh)))
        assert_same(_nest({n: v.data if isinstance(v, Shard) else v for n, v in cut.items()}), _nest(got))


def tiered_main(cmd, root) -> None:
    """Two ranks per "node", each node with its own local root (as on node-local NVMe)."""
    from pathlib import Path

    from fabric_hpc.checkpoint.tiers import TieredStore, save_local
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    node = f"n{rank // 2}"
    local, shared = Path(root) / f"local-{node}", Path(root) / "shared"
    truth = dict(_flat(full_state(seed=7)))  # the truth `restore` checks against
    mine = _nest({n: Shard.of(v, SPLIT[n], rank, world) if n in SPLIT else v for n, v in truth.items()})
    if cmd == "tiered-parts":
        for step in sys.argv[3].split(","):
            _, part = save_local(local, mine, step=int(step), comm=comm, node=node)
            assert (part is None) == (rank % 2 == 1)  # the node's first rank drains its part
            assert part is None or (part.nodes == world // 2 and part.node == rank // 2 and not part.complete)
        return
    with TieredStore(local, shared, comm=comm, node=node) as tiers:
        for step in (1, 2, 3):
            tiers.save(mine, step=step)
        tiers.flush()
    comm.Barrier()
    got = dict(_flat(restore(shared, rank=rank, world_size=world)))
    want = {n: Shard.of(v, SPLIT[n], rank, world).data if n in SPLIT else v for n, v in truth.items()}
    assert_same(_nest(want), _nest(got))


def tiered_agree_main(root, rounds) -> None:
    """docs/checkpoint.md's Tiers example as written, one node per rank, ``rounds`` times: every
    rank must restore the newest step (3), never an older one its node saw first. Any failure
    aborts every rank at once (never one rank left waiting in a collective)."""
    import traceback
    comm = MPI.COMM_WORLD
    r, n = comm.Get_rank(), comm.Get_size()
    rows = np.arange(40 * 8, dtype=np.float32).reshape(40, 8)[r * (40 // n):(r + 1) * (40 // n)]
    for i in range(rounds):
        try:
            step = _docs_tiers_example(comm, f"{root}/{i}", rows)
            steps = comm.allgather(step)
            assert steps == [3] * n, f"round {i}: ranks restored steps {steps}"
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(1)


def _docs_tiers_example(comm, root, rows) -> int:
    """The example: save 3 steps through TieredStore, flush, restore newest(); the step restored."""
    import os

    from fabric_hpc.checkpoint import RetentionPolicy
    from fabric_hpc.checkpoint.tiers import TieredStore
    r, n = comm.Get_rank(), comm.Get_size()
    local = f"{root}/local{r}/ckpts"
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with TieredStore(local, f"{root}/shared", comm=comm, node=f"node{r}",
                     local_retention=RetentionPolicy(keep_last=2)) as tiers:
        for step in (1, 2, 3):
            tiers.save({"w": Shard(rows + step, global_shape=(40, 8), dim=0, part=r, parts=n)}, step=step)
        tiers.flush()
    ref = tiers.newest()
    mine = restore(ref.path, rank=r, world_size=n)
    assert np.array_equal(mine["w"], rows + ref.step), f"rank {r}: step {ref.step} values differ"
    return ref.step


def main() -> None:
    if sys.argv[1] == "tiered-agree":
        tiered_agree_main(sys.argv[2], int(sys.argv[3]))
        MPI.COMM_WORLD.Barrier()
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(f"OK tiered-agree world={MPI.COMM_WORLD.Get_size()}")
        return
    if sys.argv[1].startswith("tiered"):
        tiered_main(sys.argv[1], sys.argv[2])
        MPI.COMM_WORLD.Barrier()
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(f"OK {sys.argv[1]} world={MPI.COMM_WORLD.Get_size()}")
        return
    if sys.argv[1] in ("save-mesh", "restore-mesh"):
        size, rank = MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()
        specs = sys.argv[4] if sys.argv[1] == "save-mesh" else sys.argv[3]
        worlds = [_mesh_spec(spec, size) for spec in specs.split(",")]
        for mesh, world in worlds:
            assert world == size if sys.argv[1] == "save-mesh" else world <= size, (sys.argv, size)
            if rank < world:
                mesh_main(sys.argv[1], sys.argv[2], mesh, world)
        MPI.COMM_WORLD.Barrier()
        if rank == 0:
            print("\n".join(f"OK {sys.argv[1]} world={world}" for _, world in worlds))
        return

    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    cmd, root = sys.argv[1], sys.argv[2]
    truth = dict(_flat(full_state(seed=7)))
    if cmd == "save":
        mine = {n: Shard.of(v, SPLIT[n], rank, world) if n in SPLIT else v for n, v in truth.items()}
        res = save(root, _nest(mine), step=int(sys.argv[3]), comm=comm, layout={"tp": world})
        assert res.path.name == f"step-{int(sys.argv[3]):010d}"
        worlds = [world]
    else:
        worlds = [int(w) for w in sys.argv[3].split(",")] if len(sys.argv) > 3 else [world]
        for w in worlds:
            assert w <= world, f"restore on {w} ranks needs a launch of >= {w}"
            if rank < w:
                _restore_check(root, truth, rank, w)
    comm.Barrier()
    if rank == 0:
        print("\n".join(f"OK {cmd} world={w}" for w in worlds))


def _restore_check(root, truth, rank, world) -> None:
    """Rank ``rank`` of ``world`` restores its part and checks it against the truth."""
    got = dict(_flat(restore(root, rank=rank, world_size=world, as_torch=False)))
    want = {n: Shard.of(v, SPLIT[n], rank, world).data if n in SPLIT else v for n, v in truth.items()}
    assert_same(_nest(want), _nest(got))
    ckpt = open_checkpoint(root)
    assert ckpt.manifest.tensors["model/layers/1/w"].split.dim == 1


if __name__ == "__main__":
    main()
