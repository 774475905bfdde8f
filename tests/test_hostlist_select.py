"""Which of a fabric's hosts a host list names (:func:`select`) and which name it has that the fabric
lacks (:func:`outside`), decided without expanding the list: a job's ``include=n[1-99998]`` against a
16-host fabric made the agent expand ~100,000 names several times per cycle (~157 ms each)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc import hostlist
from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import MAX_NAMES, expand, outside, select
from tests.hostlist_counter import made  # noqa: F401  (fixture)

FABRIC = [f"n{i}" for i in range(1, 17)]


def test_a_list_of_100000_names_against_16_hosts_is_not_expanded(made) -> None:  # noqa: F811
    want = set(expand("n[1-99998]")) & set(FABRIC)
    made[0] = 0
    assert select("n[1-99998]", FABRIC) == want == set(FABRIC)
    assert made[0] <= len(FABRIC)
    made[0] = 0
    assert select("n[5-60000],x[1-40000]", FABRIC) == set(FABRIC[4:])
    assert made[0] <= 2 * len(FABRIC)
    made[0] = 0
    assert outside("n[1-99998]", FABRIC) == "n17"
    assert made[0] <= len(FABRIC) + 1


def test_the_work_does_not_grow_with_the_list(made) -> None:  # noqa: F811
    seen = []
    for top in (100, 1_000, 99_998):
        made[0] = 0
        assert select(f"n[1-{top}]", FABRIC) == set(FABRIC)
        seen.append(made[0])
    assert seen[0] == seen[1] == seen[2] <= len(FABRIC)


def test_a_short_list_is_expanded_not_matched_against_every_host(made) -> None:  # noqa: F811
    big = [f"n{i}" for i in range(1, 5001)]
    made[0] = 0
    assert select("n[3-4],n7", big) == {"n3", "n4", "n7"}
    assert made[0] == 3


@pytest.mark.parametrize("expr, hosts, want", [
    ("n[001-010]", ["n1", "n001", "n010", "n10", "n0010", "n011"], {"n001", "n010"}),
    ("n[08-100]", ["n8", "n08", "n09", "n10", "n100", "n099", "n99", "n0100"], {"n08", "n09", "n10", "n99",
                                                                               "n100"}),
    ("r[1-2]n[1-4]", ["r1n1", "r2n4", "r3n1", "r1n5", "r12n1", "rn1", "r1n"], {"r1n1", "r2n4"}),
    ("a[1-12][3-4]", ["a113", "a13", "a14", "a123", "a1213", "a124"], {"a113", "a13", "a14", "a123", "a124"}),
    ("n[1-3]0", ["n10", "n20", "n30", "n40", "n1", "n100"], {"n10", "n20", "n30"}),
    ("x,n[9-10],y", ["x", "y", "n9", "n10", "n11"], {"x", "y", "n9", "n10"}),
    ("n[0-2]", ["n0", "n00", "n1", "n01"], {"n0", "n1"}),
    ("n[00-02]", ["n0", "n00", "n1", "n01", "n02"], {"n00", "n01", "n02"}),
    ("n[1,3,5-6,2]", ["n1", "n2", "n3", "n4", "n5", "n6", "n7"], {"n1", "n2", "n3", "n5", "n6"}),
])
def test_select_keeps_the_syntax(expr, hosts, want) -> None:
    assert select(expr, hosts) == want == set(expand(expr)) & set(hosts)
    assert _matched(expr, hosts) == want  # every part matched host by host, none expanded


def _matched(expr: str, hosts: list[str]) -> set[str]:
    """The hosts that :func:`select`'s matcher finds, whatever the sizes."""
    patterns = [hostlist._Pattern(expr, part) for part in hostlist._checked_parts(expr, MAX_NAMES)]
    return {h for h in hosts if any(p.matches(h) for p in patterns)}


@pytest.mark.parametrize("bad", ["", "  ", "n[1-", "n1-3]", "n[3-1]", "n[a-b]", "n[1,,2]", "[1-4]", "n[1-2]]",
                                 "n [1-2]", "n[[1-2]]", f"n[1-{MAX_NAMES + 1}]", "a[1-1000]b[1-1000]"])
def test_bad_lists_give_expands_error(bad) -> None:
    with pytest.raises(ConfigError) as plain:
        expand(bad)
    for fn in (select, outside):
        with pytest.raises(ConfigError) as got:
            fn(bad, FABRIC)
        assert (got.value.message, got.value.hint) == (plain.value.message, plain.value.hint)


def test_budget_is_kept() -> None:
    with pytest.raises(ConfigError, match="more than 10 names"):
        select("n[1-11]", FABRIC, budget=10)
    assert select("n[1-10]", FABRIC, budget=10) == set(FABRIC[:10])


_PREFIX = st.sampled_from(["n", "r", "a-", "su1-h", "x.y"])
_NUM = st.integers(0, 130)
_WIDTH = st.sampled_from([0, 0, 2, 3])


@st.composite
def _item(draw) -> str:
    a, b, w = draw(_NUM), draw(_NUM), draw(_WIDTH)
    a, b = min(a, b), max(a, b)
    lo, hi = str(a).zfill(w), str(b).zfill(w)
    if w and lo[0] != "0":  # padded only when the first number starts with 0
        lo = hi = str(a)
    return lo if draw(st.booleans()) else f"{lo}-{hi}"


@st.composite
def _part(draw) -> str:
    out = draw(_PREFIX)
    for _ in range(draw(st.integers(0, 2))):
        out += "[" + ",".join(draw(st.lists(_item(), min_size=1, max_size=3))) + "]"
        out += draw(st.sampled_from(["", "", "0", "-b", "1"]))
    return out


_LIST = st.lists(_part(), min_size=1, max_size=3).map(",".join)
_HOST = st.builds(lambda p, n, w, t: p + str(n).zfill(w) + t, _PREFIX, _NUM, st.sampled_from([0, 1, 2, 3, 4]),
                  st.sampled_from(["", "", "0", "-b", "-b1", "1", "12"]))


@settings(max_examples=300, deadline=None)
@given(_LIST, st.lists(_HOST, max_size=40), st.data())
def test_select_and_outside_equal_the_plain_expansion(expr, hosts, data) -> None:
    try:
        names = expand(expr)
    except ConfigError:
        return
    hosts = hosts + data.draw(st.lists(st.sampled_from(names), max_size=10))  # some hosts it names
    assert select(expr, hosts) == set(names) & set(hosts)
    assert outside(expr, hosts) == next((n for n in names if n not in set(hosts)), None)
    assert _matched(expr, hosts) == set(names) & set(hosts)
    few = hosts[:1]  # fewer hosts than names: the larger parts are matched, not expanded
    assert select(expr, few) == set(names) & set(few)
    assert select(expr, set(hosts)) == select(expr, dict.fromkeys(hosts)) == set(names) & set(hosts)
