"""``Scheduler(tiers=...)`` takes a mapping of tier names to :class:`Tier` (as ``DEFAULT_TIERS`` is).
A list of Tiers, or a mapping whose key is not its Tier's name, was a bare ``TypeError: cannot convert
dictionary update sequence element #0 to a sequence`` or a tier known under two names; now it is a
ConfigError saying what to give."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SolverPlacer
from fabric_hpc.scheduler.contract import DEFAULT_TIERS, Tier

_MINE = (Tier("gold", 1.0), Tier("normal", 0.5), Tier("spot", 0.0, preemptible=True, preempted_by=("gold",)))


def _scheduler(tiers: object) -> Scheduler:
    return Scheduler("s", MultifactorPriority(), SolverPlacer("greedy"), Backfill.easy(), tiers=tiers)


@pytest.mark.parametrize("tiers", [list(_MINE), _MINE, "high", {"gold": 1.0}, {"gold": _MINE[1]}])
def test_tiers_that_are_not_a_mapping_of_names_to_their_tiers_are_named(tiers: object) -> None:
    with pytest.raises(ConfigError, match=r"Scheduler\(tiers=") as exc:
        _scheduler(tiers)
    assert "{t.name: t for t in" in exc.value.hint


def test_the_mapping_the_hint_gives_is_taken() -> None:
    s = _scheduler({t.name: t for t in _MINE})
    assert list(s.tiers) == ["gold", "normal", "spot"]
    assert _scheduler(dict(DEFAULT_TIERS)).tiers == DEFAULT_TIERS
