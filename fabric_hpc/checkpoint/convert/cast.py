"""Block-wise dtype conversion of a convert (torch on CPU, in reused buffers) with error
statistics: float32 <-> bfloat16 <-> float16 (round to nearest even, as torch's ``.to()``), and
to float8 e4m3/e5m2 with a float32 scale per tensor or per output channel, in the layout vLLM
loads (``weight`` float8 ``[out, in]`` + ``weight_scale`` float32; dequantised weight =
``weight.float() * weight_scale``; see ``Fp8LinearMethod.create_weights`` in
vllm/model_executor/layers/quantization/fp8.py and ``CompressedTensorsW8A8Fp8``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fabric_hpc.checkpoint.convert.plan import Spec
from fabric_hpc.checkpoint.convert.recipe import FP8_DTYPES
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.tensors import HostArray


def anon(nbytes: int) -> np.ndarray:
    """A uint8 buffer in its own anonymous memory map: unmapped (returned to the system) when the
    last view of it goes, so buffers of tensors converted in parallel never pile up in the heap."""
    import mmap
    return np.frombuffer(mmap.mmap(-1, max(1, nbytes)), np.uint8)[:nbytes]


class Workspace:
    """The buffers of one tensor (source rows; for a cast two float32 blocks; when streamed an
    output block), ``elems`` elements each and reused by every block: nothing allocated per block."""

    def __init__(self, elems: int, *, cast: bool, out: bool, item: int = 4) -> None:
        self.elems = elems
        self.src = anon(elems * max(4, item))
        self.out = anon(elems * 4 if out and cast else 0)
        if cast:
            import torch
            self.x = torch.from_numpy(anon(elems * 4).view(np.float32))
            self.tmp = torch.from_numpy(anon(elems * 4).view(np.float32))

    @staticmethod
    def nbytes(elems: int, *, cast: bool, out: bool, item: int = 4) -> int:
        return elems * (max(4, item) + 4 * ((2 if cast else 0) + (1 if out and cast else 0)))

    def floats(self, which: str, shape: tuple[int, ...]) -> Any:
        buf = self.x if which == "x" else self.tmp
        return buf[:math.prod(shape)].view(shape)


class Caster:
    """Block-wise dtype conversion (torch on CPU, in the workspace) with error statistics;
    fp8 with scales."""

    def __init__(self, spec: Spec, to: str, work: Workspace) -> None:
        import torch
        self.torch, self.spec, self.to, self.work = torch, spec, to, work
        self.fp8 = to in FP8_DTYPES
        self.per_channel = self.fp8 and spec.cast is not None and spec.cast.scale == "channel"
        self.needs_amax = self.fp8 and not self.per_channel
        self.fmax = float(torch.finfo(getattr(torch, to)).max) if self.fp8 else 0.0
        self.amax = 0.0
        self.scales = np.ones((spec.rows, 1), np.float32) if self.per_channel else None
        self.err2 = self.ref2 = self.max_err = 0.0

    def _tensor(self, arr: np.ndarray, logical: str) -> Any:
        t = self.torch.from_numpy(arr)
        if logical == "bfloat16":
            return t.view(self.torch.int16).view(self.torch.bfloat16)
        return t.view(getattr(self.torch, logical)) if logical in FP8_DTYPES else t

    def _floats(self, block: np.ndarray) -> Any:
        if self.spec.dtype == "float32":  # used as it is (never written to)
            return self.torch.from_numpy(block)
        x = self.work.floats("x", block.shape)
        x.copy_(self._tensor(block, self.spec.dtype))
        return x

    def observe(self, block: np.ndarray) -> None:
        x = self._floats(block)
        if x.numel():
            self._amax_ok(self.torch.abs(x, out=self.work.floats("tmp", tuple(x.shape))).max())

    def _amax_ok(self, amax: Any) -> None:
        """NaN/inf propagate into the maximum: one check covers the block."""
        if not bool(self.torch.isfinite(amax).all()):
            raise CheckpointError(f"cast {self.spec.name}: the tensor has NaN or inf values; fp8 scales "
                                  f"cannot be computed", hint="fix the source, or leave this tensor out of the cast")
        self.amax = max(self.amax, float(amax.max()) if amax.numel() else 0.0)

    def cast(self, block: np.ndarray, dest: np.ndarray, lo: int) -> None:
        torch = self.torch
        x = self._floats(block)
        tmp = self.work.floats("tmp", tuple(x.shape))
        out = self._tensor(dest, self.to)
        if self.fp8:
            if self.per_channel:
                amax = torch.abs(x, out=tmp).reshape(x.shape[0], -1).amax(dim=1)
                self._amax_ok(amax)
                scale = torch.where(amax > 0, amax / self.fmax, torch.ones_like(amax))
                self.scales[lo:lo + x.shape[0], 0] = scale.numpy()  # type: ignore[index]
                scale = scale.reshape(-1, *([1] * (x.dim() - 1)))
            else:
                scale = torch.tensor(self.amax / self.fmax if self.amax > 0 else 1.0, dtype=torch.float32)
            torch.div(x, scale, out=tmp).clamp_(-self.fmax, self.fmax)
            out.copy_(tmp)
            tmp.copy_(out).mul_(scale)
        else:
            out.copy_(x)
            tmp.copy_(out)
        tmp.sub_(x)
        flat_d, flat_x = tmp.reshape(-1), x.reshape(-1)
        self.err2 += float(torch.dot(flat_d, flat_d))
        self.ref2 += float(torch.dot(flat_x, flat_x))
        if tmp.numel():
            lo, hi = torch.aminmax(tmp)
            self.max_err = max(self.max_err, -float(lo), float(hi))

    def scale_array(self) -> HostArray | None:
        if not self.fp8:
            return None
        if self.per_channel:
            shape = (self.spec.rows, *([1] * (len(self.spec.shape) - 1)))
            return HostArray(self.scales.reshape(shape), "float32")  # type: ignore[union-attr]
        return HostArray(np.array(self.amax / self.fmax if self.amax > 0 else 1.0, np.float32), "float32")

    def report(self) -> dict[str, Any]:
        rel = math.sqrt(self.err2 / self.ref2) if self.ref2 > 0 else 0.0
        out: dict[str, Any] = {"rel_rms_error": rel, "max_abs_error": self.max_err}
        if self.fp8:
            out["scale"] = "channel" if self.per_channel else "tensor"
        return out


__all__ = ["Caster", "Workspace", "anon"]
