"""``AsyncSaver.reserve`` is held to ``max_staging_bytes`` (it allocated any size), and an
allocation the machine cannot make is a CheckpointError (it was numpy's raw MemoryError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.checkpoint import AsyncSaver
from fabric_hpc.checkpoint.errors import CheckpointError


def test_reserve_is_held_to_max_staging_bytes(tmp_path: Path) -> None:
    with AsyncSaver(tmp_path / "ck", slots=2, max_staging_bytes=10_000_000) as saver:
        with pytest.raises(CheckpointError) as err:
            saver.reserve(500_000_000)
        assert "500,000,000 bytes" in err.value.message
        assert "max_staging_bytes=10,000,000" in err.value.message
        assert "max_staging_bytes" in err.value.hint
        assert all(slot.arena.size == 0 for slot in saver._slots)  # nothing allocated
        saver.reserve(10_000_000)  # at the cap: allowed
        assert all(slot.arena.size == 10_000_000 for slot in saver._slots)


def test_reserve_that_cannot_be_allocated_is_a_checkpoint_error(tmp_path: Path) -> None:
    with AsyncSaver(tmp_path / "ck") as saver:
        with pytest.raises(CheckpointError) as err:  # not a raw MemoryError
            saver.reserve(10**15)  # over a 47-bit address space: refused whatever the overcommit policy
        assert "cannot allocate" in err.value.message and "1,000,000,000,000,000 bytes" in err.value.message
        assert err.value.hint


@pytest.mark.parametrize("nbytes", [-1, 1.5, "10"])
def test_reserve_refuses_a_size_that_is_not_a_byte_count(tmp_path: Path, nbytes: object) -> None:
    with AsyncSaver(tmp_path / "ck") as saver, pytest.raises(CheckpointError) as err:
        saver.reserve(nbytes)  # type: ignore[arg-type]
    assert "non-negative integer" in err.value.message
