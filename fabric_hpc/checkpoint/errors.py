"""Errors of the checkpoint store (all under the one fabric-hpc error tree)."""

from __future__ import annotations

from fabric_hpc.errors import ConfigError, ExternalError, NotFoundError


class CheckpointError(ConfigError):
    """A checkpoint request that cannot be served as asked (bad names, layouts, dtypes)."""


class CheckpointNotFoundError(NotFoundError):
    """No (complete) checkpoint at the given directory or step."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint failed verification; ``problems`` names every damaged part. A
    :class:`CheckpointError`, so ``except CheckpointError`` (e.g. ``ckpt list``'s per-row handler)
    catches damage too."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class CheckpointNewerFormatError(CheckpointError):
    """A checkpoint written by a newer fabric-hpc (a ``format_version`` above the one this code
    reads): not damage. ``list`` and ``prune`` label it NEWER FORMAT and prune keeps it."""


class CheckpointBusyError(ConfigError):
    """A save is in flight and the policy is ``fail``, or a checkpoint is being read."""


class CheckpointStepAppearedError(CheckpointError):
    """Another save committed the same step into the same root while this one was writing
    (``path``: that checkpoint). Offline reshard accepts it when it is the same reshard."""

    def __init__(self, message: str, *, path: object = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class CheckpointMemoryError(ExternalError):
    """A tensor did not fit in this process's memory (a MemoryError: the host, ``ulimit -v`` or the
    job's ``--mem``). Exit code 5, as for a full disk: the request is fine, the resources are not."""


class CheckpointIOError(ExternalError):
    """The disk failed under us (ENOSPC, EIO, permissions on a shared path)."""
