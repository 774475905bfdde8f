"""Ranks of a real torch.distributed job (gloo, started by torch.multiprocessing) that write and
read DCP checkpoints with DTensor shards, for tests/checkpoint/test_interop_dcp.py."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor


def full_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(10, 6, generator=g), "emb": torch.randn(7, 8, generator=g).to(torch.bfloat16),
            "bias": torch.arange(6, dtype=torch.int64)}


def _init(rank: int, world: int, init: str) -> object:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    return init_device_mesh("cpu", (world,))


def save_sharded(rank: int, world: int, init: str, out: str) -> None:
    """Every rank saves its DTensor shards (w along rows, emb along columns); bias replicated."""
    mesh = _init(rank, world, init)
    full = full_state()
    sd = {"model": {"w": distribute_tensor(full["w"], mesh, [Shard(0)]),
                    "emb": distribute_tensor(full["emb"], mesh, [Shard(1)])},
          "bias": full["bias"]}
    dcp.save(sd, checkpoint_id=out)
    dist.destroy_process_group()


def load_sharded(rank: int, world: int, init: str, src: str, expect: str) -> None:
    """Load an exported DCP as DTensor shards on this world size and check every local shard."""
    mesh = _init(rank, world, init)
    want = torch.load(expect)
    sd = {k: distribute_tensor(torch.zeros_like(v), mesh, [Shard(0)]) if v.dim() else torch.zeros_like(v)
          for k, v in want.items()}
    dcp.load(sd, checkpoint_id=src)
    for k, v in want.items():
        local = sd[k].to_local() if hasattr(sd[k], "to_local") else sd[k]
        expect_local = distribute_tensor(v, mesh, [Shard(0)]).to_local() if v.dim() else v
        if not torch.equal(local.view(torch.uint8) if local.dim() else local,
                           expect_local.view(torch.uint8) if expect_local.dim() else expect_local):
            print(f"rank {rank}: {k} differs", file=sys.stderr)
            raise SystemExit(1)
    dist.destroy_process_group()
