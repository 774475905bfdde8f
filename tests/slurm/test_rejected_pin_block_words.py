"""A pin Slurm rejects (``BadConstraints``) that spans several blocks of the fabric (NVLink domains,
else leaves) names topology/block's rule as the likely cause and its fixes (--segment=N, or include=
inside one rack), in the hand-over reason that `fabric slurm why` shows. It named only "its GPU type or
a constraint"."""

from __future__ import annotations

from fabric_hpc.slurm.actions import Actions, rejected_pin_words
from fabric_hpc.topology import build, generators

NVL = build(generators.nvl72(4))


def _hosts(rack: int, n: int = 18) -> tuple[str, ...]:
    return tuple(f"r00{rack}-h{i:02d}" for i in range(1, n + 1))


def test_a_pin_over_two_racks_names_the_block_rule_and_segment():
    words = rejected_pin_words(_hosts(2) + _hosts(3), NVL)
    assert words.startswith("Slurm rejected the pin to r002-h[01-18],r003-h[01-18] (BadConstraints)")
    assert "2 blocks (r002, r003)" in words and "topology/block" in words
    assert "--segment=18" in words and "include=" not in words  # 36 hosts: never inside one rack


def test_a_small_pin_over_two_racks_also_offers_one_rack():
    words = rejected_pin_words(_hosts(1, 2) + _hosts(2, 2), NVL)
    assert "--segment=2" in words  # the pin's hosts per block: 2 and 2
    assert "--comment=fabric:include=" in words


def test_a_pin_inside_one_block_keeps_the_old_words():
    words = rejected_pin_words(_hosts(2, 4), NVL)
    assert "topology/block" not in words
    assert "its GPU type or a constraint" in words


def test_the_hand_over_carries_the_words():
    actions = Actions(None, lambda *a, **k: None)  # type: ignore[arg-type]
    actions.rejected({7: _hosts(2) + _hosts(3)}, NVL)
    assert "--segment=18" in actions.to_hand[7]
    actions = Actions(None, lambda *a, **k: None)  # type: ignore[arg-type]
    actions.rejected({7: _hosts(2)})  # no fabric given: the old words
    assert "its GPU type or a constraint" in actions.to_hand[7]
