"""Symmetry breaking for CP-SAT's items: interchangeable items take non-increasing counts.

Two items are interchangeable when swapping their counts changes no term of the model: the same
cost and hosts-used tables, the same capacity and member hosts' free GPUs and rates, the same
domains above them, the same pristine state and the same uplinks. On an idle or evenly busy fabric
most items are (64 NVL72 racks in 8 leaf groups: 8 classes of 8 racks), and CP-SAT spent its whole
budget proving that the permutations of one answer cost the same (``gpus=73`` on 64 racks: ~6 s).
Ordering each class's counts (``c_a ≥ c_b`` for consecutive members) keeps one of them, so the
optimum is unchanged. Not with pipeline stages: their terms read domain counts in ring order.
"""

from __future__ import annotations

import numpy as np

from fabric_hpc.placement.cpsat_comm import _group_of, _group_specs, host_rates


def interchangeable(p, items) -> list[list[int]]:
    """Classes (two or more items, in item order) of items whose counts may be permuted freely."""
    if p.pp > 1 or len(items.cap) < 2:
        return []
    lv, rates, j = p.levels, host_rates(p.fab), items.level
    specs = _group_specs(p.fab) if lv.chain[j] in p.fab.levels else {}
    classes: dict[tuple, list[int]] = {}
    for i, hs in enumerate(items.members):
        d = int(items.dom[i, j])
        spec = specs.get(_group_of(p, j, d)) if specs else None
        key = (int(items.cap[i]), np.asarray(items.cost[i], np.float64).tobytes(),
               np.asarray(items.hosts_used[i], np.int64).tobytes(),
               tuple(int(x) for x in items.dom[i, j + 1:]),
               bool(p.pristine[j][d]) if j < len(p.pristine) else None,
               p.cap[hs].tobytes(), p.free_all[hs].tobytes(), p.free_mat[hs].tobytes(), rates[hs].tobytes(),
               None if spec is None else (spec.switches, spec.uplink_gbps))
        classes.setdefault(key, []).append(i)
    return [v for v in classes.values() if len(v) > 1]


def order_classes(m, c, classes: list[list[int]]) -> None:
    """``c_a ≥ c_b`` for consecutive members of each class."""
    for members in classes:
        for a, b in zip(members, members[1:]):
            m.Add(c[a] >= c[b])


def sorted_hint(per_item: np.ndarray, classes: list[list[int]]) -> np.ndarray:
    """The warm start's counts permuted within each class to satisfy :func:`order_classes` (the same
    cost: the members are interchangeable)."""
    out = per_item.copy()
    for members in classes:
        out[members] = np.sort(per_item[members])[::-1]
    return out
