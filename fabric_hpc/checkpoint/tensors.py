"""Sources and targets: numpy arrays and torch tensors (CPU or CUDA; torch imported lazily),
and :class:`Shard`, a rank's piece of a tensor split along one or more dimensions."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import dtype_name, split_bounds, stored_dtype
from fabric_hpc.extras import require


@dataclass(frozen=True)
class Shard:
    """Part ``part`` of ``parts`` of a tensor of ``global_shape`` split along ``dim``
    (torch.chunk convention: every part holds ceil(n / parts) rows, the last fewer or none).

    For a split over several dimensions (a rank's block of a device mesh), ``dim``, ``part``
    and ``parts`` are tuples of equal length: ``Shard(x, (8, 6), dim=(0, 1), part=(1, 0),
    parts=(2, 3))`` is rows 4:8, columns 0:2."""

    data: Any
    global_shape: tuple[int, ...]
    dim: int | tuple[int, ...]
    part: int | tuple[int, ...]
    parts: int | tuple[int, ...]

    @property
    def dims(self) -> tuple[int, ...]:
        return as_tuple(self.dim)

    @property
    def grid_part(self) -> tuple[int, ...]:
        return as_tuple(self.part)

    @property
    def grid_parts(self) -> tuple[int, ...]:
        return as_tuple(self.parts)

    def region(self) -> tuple[tuple[int, int], ...]:
        """The (lo, hi) bounds of this part in every dimension of the global tensor."""
        return split_region(self.global_shape, self.dims, self.grid_part, self.grid_parts)

    @staticmethod
    def of(full: Any, dim: int | tuple[int, ...], part: int | tuple[int, ...],
           parts: int | tuple[int, ...]) -> Shard:
        """Cut part ``part`` of ``full`` (handy in tests and for replicated sources)."""
        region = split_region(tuple(full.shape), as_tuple(dim), as_tuple(part), as_tuple(parts))
        return Shard(full[tuple(slice(lo, hi) for lo, hi in region)], tuple(full.shape), dim, part, parts)


def as_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def check_mesh(mesh: tuple[int, ...] | None, world_size: int) -> None:
    """A restore/reshard mesh must multiply to the world size."""
    if mesh is not None and (math.prod(mesh) != world_size or any(m < 1 for m in mesh)):
        raise CheckpointError(f"mesh {'x'.join(map(str, mesh))} does not multiply to world size {world_size}",
                              hint="give one factor per split dimension, e.g. mesh (2, 4) for 8 ranks (--mesh 2x4)")


def split_region(shape: tuple[int, ...], dims: tuple[int, ...], part: tuple[int, ...],
                 parts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """torch.chunk-style bounds of block ``part`` of a ``parts`` grid over ``dims``."""
    if not len(dims) == len(part) == len(parts) or len(set(dims)) != len(dims) \
            or any(not 0 <= d < len(shape) for d in dims) \
            or any(not 0 <= i < p for i, p in zip(part, parts)):
        raise CheckpointError(f"split dim {list(dims)} / part {list(part)} of {list(parts)} "
                              f"does not fit shape {list(shape)}",
                              hint="dim, part and parts need one entry per split dimension; 0 <= part < parts")
    region = [(0, s) for s in shape]
    for d, i, p in zip(dims, part, parts):
        region[d] = split_bounds(shape[d], p, i)
    return tuple(region)


@dataclass(frozen=True)
class HostArray:
    """Bytes already on the host in storage form (the async saver's staged copy) plus the
    logical dtype they represent (e.g. uint16 bytes of a bfloat16 tensor)."""

    data: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def is_torch(obj: Any) -> bool:
    # torch may be half imported by another thread (a restore casting bf16 imports it lazily):
    # then no object can be a tensor yet, and torch.Tensor may not exist
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return tensor is not None and isinstance(obj, tensor)


def host_view(obj: Any, name: str = "") -> tuple[np.ndarray, str]:
    """A C-contiguous little-endian numpy view (copy only when needed) of the bytes to store,
    and the logical dtype name. bfloat16/float8 become unsigned views of the same width.
    ``name`` (the tensor's) is named in the errors."""
    if isinstance(obj, HostArray):
        return obj.data, obj.dtype
    if not is_torch(obj) and not isinstance(obj, np.ndarray | np.generic):
        raise CheckpointError(f"cannot save {name or 'a value'!r}: it is a {type(obj).__name__}",
                              hint="tensors must be numpy arrays or torch tensors (or Shards of them); "
                                   "convert it (np.asarray(x), torch.as_tensor(x))")
    if is_torch(obj):
        check_storable(obj, name)
    logical = dtype_name(obj)
    target = stored_dtype(logical)
    if is_torch(obj):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg().contiguous()  # numpy() refuses the lazy conj/neg bits
        if logical in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            import torch
            t = t.view(torch.int16 if target.itemsize == 2 else torch.uint8)
        arr = t.numpy().view(target)
    else:
        arr = np.asarray(obj)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
        arr = arr.view(target)
    return arr, logical


def check_storable(t: Any, name: str) -> None:
    """Refuse torch tensors that have no dense bytes to store (sparse, nested, meta)."""
    import torch
    what = f"tensor {name!r}" if name else "a tensor"
    if t.is_nested:
        raise CheckpointError(f"{what} is a nested tensor, which a checkpoint cannot store",
                              hint="save its components (t.unbind()) under separate keys")
    if t.layout != torch.strided:
        raise CheckpointError(f"{what} has layout {str(t.layout).removeprefix('torch.')}; only dense tensors "
                              "can be saved", hint="save t.to_dense(), or its indices and values as separate tensors")
    if t.device.type == "meta":
        raise CheckpointError(f"{what} is on the meta device (it has no data)",
                              hint="materialise it (e.g. module.to_empty(device='cpu'), then load or "
                                   "initialise the weights) before saving")


def empty_like_target(shape: tuple[int, ...], logical: str, *, torch_out: bool) -> Any:
    """A fresh output buffer (numpy array, or torch tensor when ``torch_out``)."""
    if torch_out:
        torch = require("torch", extra="torch", needed_for=f"restoring {logical} values as torch tensors")
        return torch.empty(shape, dtype=getattr(torch, logical))
    if logical in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        raise CheckpointError(f"numpy has no {logical}: restore it as torch (as_torch=True) "
                              f"or cast it (dtype='float32')")
    return np.empty(shape, dtype=logical)


def target_view(out: Any) -> tuple[np.ndarray, str]:
    """The writable numpy view and logical dtype of a preallocated output (array or CPU tensor)."""
    logical = dtype_name(out)
    if is_torch(out):
        if out.device.type != "cpu":
            raise CheckpointError(f"restore targets must be CPU tensors, got one on {out.device}",
                                  hint="restore into a CPU tensor, then .to(device)")
        if not out.is_contiguous():
            raise CheckpointError("restore targets must be contiguous tensors (this one is a strided view, "
                                  "e.g. a transpose or a slice)",
                                  hint="restore into t.contiguous() (a copy) and t.copy_() it back, or "
                                       "restore without into= and copy")
        t = out.detach()  # a requires_grad parameter is filled in place, as load_state_dict does
        if logical in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            import torch
            t = t.view(torch.int16 if stored_dtype(logical).itemsize == 2 else torch.uint8)
        return t.numpy().view(stored_dtype(logical)), logical
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
        raise CheckpointError("restore targets must be writable C-contiguous numpy arrays or CPU tensors")
    return out, logical
