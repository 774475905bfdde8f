"""Checkpoint store on Zarr v3: atomic, verified, reshardable, async.

>>> from fabric_hpc.checkpoint import save, restore, verify
>>> save("ckpts", {"model": {"w": w}}, step=100)              # doctest: +SKIP
>>> state = restore("ckpts")                                   # doctest: +SKIP

Format: ``docs/checkpoint-format.md``; usage: ``docs/checkpoint.md``.
"""

from fabric_hpc.checkpoint.async_save import AsyncSaver, SaveHandle
from fabric_hpc.checkpoint.contracts import Communicator, SingleProcess
from fabric_hpc.checkpoint.errors import (
    CheckpointBusyError, CheckpointCorruptError, CheckpointError, CheckpointIOError,
    CheckpointNotFoundError,
)
from fabric_hpc.checkpoint.format import FORMAT_VERSION, Manifest, TensorEntry
from fabric_hpc.checkpoint.reader import Checkpoint, open_checkpoint
from fabric_hpc.checkpoint.restore import VerifyReport, restore, verify
from fabric_hpc.checkpoint.retention import RetentionPolicy, prune
from fabric_hpc.checkpoint.store import CheckpointRef, list_checkpoints, resolve
from fabric_hpc.checkpoint.tensors import Shard
from fabric_hpc.checkpoint.writer import SaveResult, save

__all__ = [
    "AsyncSaver", "Checkpoint", "CheckpointBusyError", "CheckpointCorruptError", "CheckpointError",
    "CheckpointIOError", "CheckpointNotFoundError", "CheckpointRef", "Communicator", "FORMAT_VERSION",
    "Manifest", "RetentionPolicy", "SaveHandle", "SaveResult", "Shard", "SingleProcess",
    "TensorEntry", "VerifyReport", "list_checkpoints", "open_checkpoint", "prune", "resolve",
    "restore", "save", "verify",
]
