from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress, expand


@pytest.mark.parametrize("expr, names", [
    ("n[1-3,7]", ["n1", "n2", "n3", "n7"]),
    ("su1-h[01-03]", ["su1-h01", "su1-h02", "su1-h03"]),
    ("a[1-2]b[1-2]", ["a1b1", "a1b2", "a2b1", "a2b2"]),
    ("x,n[9-10]", ["x", "n9", "n10"]),
    ("n1,n1", ["n1"]),
])
def test_expand(expr, names):
    assert expand(expr) == names


@pytest.mark.parametrize("bad", ["", "n[1-", "n1-3]", "n[3-1]", "n[a-b]", "n[1,,2]"])
def test_expand_rejects_malformed(bad):
    with pytest.raises(ConfigError):
        expand(bad)


def test_compress_keeps_padding_and_merges_natural_width():
    assert compress(expand("su01-h[01-32]")) == "su01-h[01-32]"
    assert compress(["n1", "n2", "n10", "n11"]) == "n[1-2,10-11]"
    assert compress(["x", "n5"]) == "x,n5"


@given(st.sets(st.integers(0, 300), min_size=1, max_size=40), st.sampled_from(["n", "gpu-h", "r1-"]),
       st.integers(0, 3))
def test_compress_round_trip(numbers, prefix, width):
    names = [f"{prefix}{str(n).zfill(width)}" for n in sorted(numbers)]
    assert sorted(expand(compress(names))) == sorted(names)
