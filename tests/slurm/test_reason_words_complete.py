"""Every reason name a Slurm description maps to (REASON_PATTERNS, REASON_DESCRIPTIONS) has plain words in
REASONS: `fabric slurm why` printed the bare name ("ReservationDeleted") for eight of them."""

from __future__ import annotations

from fabric_hpc.slurm.parse import REASON_DESCRIPTIONS, REASON_PATTERNS, REASONS, reason_words


def test_every_mapped_reason_has_words():
    names = {name for _, name in REASON_PATTERNS} | set(REASON_DESCRIPTIONS.values())
    assert not names - set(REASONS), sorted(names - set(REASONS))
    for name in names:
        assert reason_words(name) != name
