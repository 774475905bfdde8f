"""Integer scales of CP-SAT's objective (:mod:`~fabric_hpc.placement.cpsat`) at extreme inputs.

The model is in integers: the collective bound ``T`` in whole µs, the placement terms × :data:`SCALE`
per weight unit, ``LEX`` above their scaled range. Weights and sizes the validators accept can pass
CP-SAT's 64-bit integers (``host=1e18``, 1 PiB over 1 Gb/s links); docs/placement.md, "CP-SAT at
extreme inputs", says what is done then. Normal inputs get the same integers as before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fabric_hpc.placement.cpsat import Items
    from fabric_hpc.placement.problem import Problem

#: integers per weight unit of the placement terms (their resolution: 0.001)
SCALE = 1000
#: the placement terms' scaled range is held to at most this (2**40): past it (weights near 1e9 and
#: above) their resolution is ``range / 2**40`` instead of 1/SCALE, so that LEX·T + rest stays an int64
#: CP-SAT accepts (docs/placement.md, "CP-SAT at extreme inputs")
REST_MAX = 2**40
#: bits the collective bound T (µs) must leave free below int64: past 2**51 µs (71 years) cpsat hands
#: back greedy's answer, saying why
T_HEADROOM = 12


def rest_range(p: Problem, items: Items) -> float:
    """The placement terms' range in the model (weight units): the sum of every term's largest value."""
    w, lv = p.weights, p.levels
    tables = sum(float(np.abs(t).max(initial=0.0)) for t in items.cost)
    doms = sum((w.span_weight(j) + w.pristine_break) * len(np.unique(items.dom[:, j]))
               for j in range(items.level, len(lv.chain)))
    hosts = sum(len(x) for x in items.members) * (w.span_weight(0) + w.host)
    return tables + doms + hosts


def rest_scale(p: Problem, items: Items) -> float:
    """Integers per weight unit of the placement terms: :data:`SCALE`, or less where their scaled range
    would pass :data:`REST_MAX` (huge weights: the resolution is then ``range / REST_MAX``)."""
    rng = rest_range(p, items)
    if SCALE * rng <= REST_MAX:
        return SCALE
    return REST_MAX / rng if math.isfinite(rng) else REST_MAX / np.finfo(np.float64).max


def coef(x: float) -> int:
    """A scaled term as an integer CP-SAT accepts (held to ±REST_MAX: a float sum past it rounds)."""
    if not math.isfinite(x):
        return REST_MAX if x > 0 else -REST_MAX
    return int(round(min(max(x, -REST_MAX), REST_MAX)))


def fit_int64(model, t, lex: int, rest) -> tuple[object | None, str]:
    """The phase-2 objective CP-SAT accepts: ``LEX·T + rest``; where its bounds pass int64 (a collective
    of hours at µs resolution times LEX), ``rest`` alone (phase 1's ``T ≤ T*`` keeps the collective
    first); None where even T alone or the constraints do not fit. Returns (objective, why not LEX·T)."""
    if not isinstance(t, int):  # T with 2**T_HEADROOM to spare: CP-SAT's presolve sums it (a T near
        model.Minimize(2**T_HEADROOM * t)  # 2**62 validated, then read as "proven infeasible")
        if why := model.Validate():
            return None, why.split(":")[0]
    objective = lex * t + rest
    model.Minimize(objective)
    why = model.Validate()
    if not why:
        return objective, ""
    model.Minimize(rest)
    return (None if model.Validate() else rest), why.split(":")[0]


def scale_notes(scale: float, wide: str) -> list[str]:
    """The placement's notes where :func:`rest_scale` coarsened the placement terms or :func:`fit_int64`
    dropped ``LEX·T`` (``wide``: CP-SAT's reason)."""
    out = []
    if scale < SCALE:
        out.append(f"huge weights: the placement terms solved to a resolution of {1 / scale:.3g} (CP-SAT's "
                   "integers); the exact cost compares the answers")
    if wide:
        out.append("the collective's µs times the placement terms' range pass CP-SAT's 64-bit integers: the "
                   "placement terms minimised under phase 1's collective (T ≤ T*), not LEX·T + rest")
    return out
