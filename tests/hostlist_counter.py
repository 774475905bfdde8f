"""A pytest fixture counting the host names :mod:`fabric_hpc.hostlist` generates or examines: names
expanded, made one at a time, or matched against a list's ranges (tests of work that must not grow with
a host list's size count names, never time)."""

from __future__ import annotations

import pytest

from fabric_hpc import hostlist


@pytest.fixture()
def made(monkeypatch) -> list[int]:
    """How many names the host-list code generated or examined (expanded, made one at a time, or
    matched against a pattern)."""
    counter = [0]
    plain = hostlist._expand_one

    depth = [0]

    def expand_one(expr, part):  # recursive: count the names of the outer call only
        depth[0] += 1
        try:
            out = plain(expr, part)
        finally:
            depth[0] -= 1
        counter[0] += len(out) if depth[0] == 0 else 0
        return out

    monkeypatch.setattr(hostlist, "_expand_one", expand_one)
    if hasattr(hostlist, "_iter_one"):
        lazy = hostlist._iter_one

        def iter_one(expr, part):
            for name in lazy(expr, part):
                counter[0] += 1
                yield name

        monkeypatch.setattr(hostlist, "_iter_one", iter_one)
    if hasattr(hostlist, "_Pattern"):
        matches = hostlist._Pattern.matches

        def counted(self, name):
            counter[0] += 1
            return matches(self, name)

        monkeypatch.setattr(hostlist._Pattern, "matches", counted)
    return counter
