"""Contracts of the checkpoint store: the communicator a multi-rank save/restore talks through
(an ``mpi4py`` communicator satisfies it) and the retention policy shape."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Communicator(Protocol):
    """The collective operations a multi-rank save needs (``mpi4py.MPI.Comm`` has them)."""

    def Get_rank(self) -> int: ...  # noqa: N802 (mpi4py names)

    def Get_size(self) -> int: ...  # noqa: N802

    def bcast(self, obj: Any, root: int = 0) -> Any: ...

    def gather(self, sendobj: Any, root: int = 0) -> list[Any] | None: ...

    def Barrier(self) -> None: ...  # noqa: N802


class SingleProcess:
    """The communicator of a single-process save (rank 0 of 1)."""

    def Get_rank(self) -> int:  # noqa: N802
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, sendobj: Any, root: int = 0) -> list[Any]:
        return [sendobj]

    def Barrier(self) -> None:  # noqa: N802
        return None
