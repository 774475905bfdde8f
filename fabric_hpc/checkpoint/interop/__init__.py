"""Checkpoints that cross ecosystems: Hugging Face safetensors and PyTorch DCP in and out, and
transcoding (dtype, names, fused projections, tensor-parallel layout) as one verified operation.

Every direction writes through the same atomic commit as :func:`fabric_hpc.checkpoint.save`
(temporary directory, CRC-32C per chunk, fsync, rename) one tensor at a time
(:class:`~fabric_hpc.checkpoint.interop.stream.StreamWriter`). See ``docs/checkpoint.md``.
"""

from fabric_hpc.checkpoint.interop.stream import StreamWriter, read_stored

__all__ = ["StreamWriter", "read_stored"]
