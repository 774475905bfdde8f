"""Fix hints that can be followed: a nodes × GPUs request is told a shape that splits (not "18 GPUs"
for -N2 with 8 GPUs per node), tp values that fit its hosts, and a request that can never fit is told
what is too small in the words of the fix (not "only 256 GPUs" before "at most 8 GPUs per node" for a
36-GPU request)."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.explain import never_fits
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build, generators


@pytest.mark.parametrize(("text", "words"), [
    ("nodes=2,gpus=8,tp=3", "(use tp = 2, 4, 8 or 16; or 2 nodes of 6 GPUs for tp=3)"),
    ("nodes=3,gpus=8,tp=16", "(use tp = 2, 4, 8 or 24; or 4 nodes of 8 GPUs for tp=16)"),
    ("nodes=2,gpus=8,tp=8,pp=3", "(use pp = 2; or 3 nodes of 8 GPUs for pp=3)"),
    ("nodes=2,gpus=6,tp=3,pp=3", "(use pp = 2 or 4; or 3 nodes of 6 GPUs for pp=3)"),
    ("nodes=3,gpus=8,tp=5", "(use tp = 2, 4, 8 or 24; or 3 nodes of 5 GPUs for tp=5)"),
    ("gpus=16,tp=3", "(use tp = 2, 4, 8 or 16; or 18 GPUs for tp=3)"),  # a total: a GPU count is a request
])
def test_split_hints_name_a_request_that_splits(text, words):
    with pytest.raises(ConfigError) as exc:
        parse_request(text)
    assert words in exc.value.message
    suggestion = exc.value.message.rsplit("; or ", 1)[1].rstrip(")")
    what, _, keep = suggestion.partition(" for ")
    if " nodes of " in what:  # the suggested shape passes the same check
        nodes, gpn = what.split(" nodes of ")
        size = f"nodes={nodes},gpus={gpn.split()[0]}"
    else:
        size = f"gpus={what.split()[0]}"
    rest = [p for p in text.split(",") if not p.startswith(("nodes=", "gpus="))]
    parse_request(",".join([size, *rest]))


def test_tp_values_offered_fit_the_hosts():
    with pytest.raises(ConfigError) as exc:
        parse_request("nodes=3,gpus=8,tp=5")  # 24 GPUs: divisors 3, 6, 12 do not fit hosts of 8
    assert "(use tp = 2, 4, 8 or 24;" in exc.value.message


@pytest.fixture(scope="module")
def fab():
    return build(generators.leaf_spine(32, hosts_per_leaf=4, gpus=8, cpus=8))


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("nodes=4,gpus=9", "no host of the fabric has 9 GPUs (the most on one host is 8); 4 host(s) × 9 GPU(s) "
                       "cannot ever fit", "ask for at most 8 GPUs per node"),
    ("nodes=33,gpus=1", "the fabric has only 32 hosts; 33 host(s) × 1 GPU(s) cannot ever fit",
     "ask for at most 32 nodes with 1 GPUs each"),
    ("nodes=40,gpus=8", "the fabric has only 256 GPUs on 32 hosts; 40 host(s)", "at most 32 nodes with 8 GPUs"),
    ("gpus=300", "the fabric has only 256 GPUs on 32 hosts; 300 GPU(s)", "ask for at most 256 GPUs"),
])
def test_never_fits_says_what_is_too_small_as_the_fix_does(fab, text, message, hint):
    found = never_fits(fab, parse_request(text))
    assert found is not None and found.message.startswith(message) and hint in found.hint, (found.message,
                                                                                            found.hint)


SHAPES = [(2, 8, "tp=3"), (3, 8, "tp=16"), (2, 8, "tp=8,pp=3"), (2, 6, "tp=3,pp=3"), (3, 8, "tp=5"),
          (5, 4, "pp=3"), (1, 8, "tp=8,pp=2")]


def test_job_submit_gives_the_same_hints_word_for_word(tmp_path):
    from fabric_hpc.slurm.view import _request
    from tests.slurm.test_job_submit_lua import run_cases

    rows = run_cases(tmp_path, [{"min_nodes": n, "tres_per_node": f"gres:gpu:{g}", "comment": f"fabric:{o}"}
                                for n, g, o in SHAPES])
    for (n, g, opts), (rc, _, said) in zip(SHAPES, rows, strict=True):
        with pytest.raises(ConfigError) as exc:
            _request(n, g, opts)
        agent = exc.value.message.removeprefix("--comment: ")
        assert rc == "-1" and said == f"fabric: --comment=fabric:{opts}: {agent}", (n, g, opts, said, agent)
