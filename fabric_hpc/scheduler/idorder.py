"""The order of job ids where everything else ties (priority, submit time): natural order.

A job id is compared by its runs of digits as numbers and the text between them as text, so Slurm
job ``9`` comes before ``10`` and array task ``500_2`` before ``500_10`` (as text, ``"10" < "9"``).
:func:`id_key` is cached per id: a 50,000-job replay sorts the same ids again and again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_RUNS = re.compile(r"([0-9]+)")


@lru_cache(maxsize=1 << 17)
def id_key(job_id: str) -> tuple:
    """``"500_10"`` → ``(("", (3, "500"), "_", (2, "10"), ""), "500_10")``: text parts and runs of
    digits alternate in the first tuple, so text is only ever compared with text, and an id that
    is another's beginning (``"a"``, ``"a1"``) comes first; a run is (length without leading zeros,
    digits), numeric order for a run of any length; the id itself, second, breaks the tie of ids
    that are the same numbers written differently (``"01"``, ``"1"``), so the order is total."""
    parts = _RUNS.split(job_id)
    for i in range(1, len(parts), 2):
        run = parts[i].lstrip("0")
        parts[i] = (len(run), run)
    return tuple(parts), job_id


def sort_by_time_then_id(items: list, time: Callable[[Any], float], ident: Callable[[Any], str]) -> None:
    """Sort ``items`` in place by (``time(x)``, :func:`id_key` of ``ident(x)``); the id key is made only
    for items whose times tie (few in most traces), so a 200,000-job trace sorts at the cost of its
    times."""
    items.sort(key=time)
    times = list(map(time, items))
    start, n = 0, len(items)
    for k in range(1, n + 1):
        if k == n or times[k] != times[start]:
            if k - start > 1:
                items[start:k] = sorted(items[start:k], key=lambda x: id_key(ident(x)))
            start = k
