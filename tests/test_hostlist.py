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


_ODD_NAMES = [
    ["1", "2", "07"],  # no prefix: "[1-2],07" was refused by expand ("no name before '['")
    ["n1", "n2", "3", "4"],
    ["big18446744073709551616", "big18446744073709551617"],  # past 2^64: Slurm read the range wrongly
    ["w1234567890123456789", "w1234567890123456790"],  # 19 digits: wider than expand's ranges take
    ["n999999999999999998", "n999999999999999999"],  # 18 digits: still a range
    ["n٣", "n٤"],  # non-ASCII digits are no number: "n[3-4]" would have renamed them
]


@pytest.mark.parametrize("names", _ODD_NAMES)
def test_compress_round_trips_through_fabrics_parser(names):
    text = compress(names)
    assert sorted(expand(text)) == sorted(names), text


def test_compress_ranges_only_prefixed_names_of_at_most_18_digits():
    assert compress(["1", "2", "07"]) == "1,2,07"
    assert compress(["n1", "n2", "3", "4"]) == "n[1-2],3,4"
    assert compress(["big18446744073709551616", "big18446744073709551617"]) == \
        "big18446744073709551616,big18446744073709551617"
    assert compress(["n999999999999999998", "n999999999999999999"]) == "n[999999999999999998-999999999999999999]"


def _scontrol(tmp_path, expr):
    """``scontrol show hostnames EXPR`` with a minimal slurm.conf (no daemon is asked); None if unusable."""
    import os
    import shutil
    import subprocess

    exe = shutil.which("scontrol")
    if exe is None:
        return None
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=t\nSlurmctldHost=localhost\nNodeName=n1 CPUs=1\nPartitionName=p Nodes=n1\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    done = subprocess.run([exe, "show", "hostnames", expr], capture_output=True, text=True, env=env, timeout=20)
    return done.stdout.split() if done.returncode == 0 else None


@pytest.mark.parametrize("names", [n for n in _ODD_NAMES if n[0] != "n٣" and not n[0].startswith("big")])
def test_compress_round_trips_through_scontrol(tmp_path, names):
    if _scontrol(tmp_path, "n[1-2]") != ["n1", "n2"]:
        pytest.skip("no usable scontrol on PATH")
    assert sorted(_scontrol(tmp_path, compress(names))) == sorted(names)


def test_names_slurm_would_rename_are_named(tmp_path):
    """Slurm renames a name whose number is past 2^64 - 2 even written out in full: the spec refuses them."""
    from fabric_hpc.hostlist import slurm_renames

    assert slurm_renames("big18446744073709551616") and slurm_renames("n18446744073709551615")
    assert slurm_renames("n" + "9" * 5000)
    assert not slurm_renames("n18446744073709551614") and not slurm_renames("n0000000000000000000000001")
    assert not slurm_renames("node") and not slurm_renames("n1")
    shown = _scontrol(tmp_path, "big18446744073709551616")
    if shown is not None:
        assert shown == ["big18446744073709551615"]  # what the refusal is about
        assert _scontrol(tmp_path, "n18446744073709551614") == ["n18446744073709551614"]
