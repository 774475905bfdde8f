"""The agent cycle's fast paths answer what the general code answers (issue 21: the cycle at 16,384
GPUs): Slurm numbers decoded without the general checks where they are plain, a running job's GPUs
taken from what the view just gave it (not a scan of the fabric), comments split once per text."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.replay import ReplayClient, scale_recording
from fabric_hpc.slurm.tiers import TierMap, lowest
from fabric_hpc.slurm.view import build_view, split_options
from fabric_hpc.topology import build, generators
from tests.slurm_integration.test_agent_replay import VERSIONS, recorded

FAB = build(generators.superpod(sus=1))


@pytest.mark.parametrize(("value", "want"), [
    (5, 5), (0, 0), (-3, -3), (2**64 - 1, 2**64 - 1), (1.5, 1.5), (None, None),
    ({"set": True, "infinite": False, "number": 7}, 7), ({"number": 7}, 7), ({"set": True, "number": 0}, 0),
    ({"set": False, "infinite": False, "number": 7}, None),
    ({"set": True, "infinite": True, "number": 0}, None),
    ({"set": True, "infinite": False, "number": 2.5}, 2.5), (OrderedDict(number=4), 4),
])
def test_numbers_decode_as_before(value, want):
    assert decode.number({"k": value}, "k", "job 1") == want


@pytest.mark.parametrize("value", [
    True, 2**64, -(2**64), float("nan"), "5", [5], {"number": True}, {"number": 2**64},
    {"set": 1, "number": 3},
    {"infinite": 0, "number": 3}, {"number": 3, "extra": 1}, {"set": True},
])
def test_bad_numbers_are_still_refused(value):
    with pytest.raises(SlurmError, match="field 'k'"):
        decode.number({"k": value}, "k", "job 1")


@pytest.mark.parametrize("version", VERSIONS)
def test_running_jobs_get_the_gpus_the_state_gives_them(version):
    nodes, jobs = recorded(version)
    s, q = scale_recording(nodes, jobs, FAB.hosts, pending=8, busy_fraction=0.75,
                           running_comment="fabric:tier=spot")
    client = ReplayClient(s, q)
    read = client.jobs()
    first = next(j for j in read if j.gpus)
    host, idx = next(iter(first.gpus.items()))
    shuffled = replace(first, gpus={host: tuple(reversed(idx))})  # listed against the fabric's order
    twice = replace(first, gpus={FAB.hosts[-1]: (1, 0)})  # its id again, on a free host: it holds both
    view = build_view(FAB, client.nodes(), [shuffled, *read[1:], twice], now=2e9)
    assert len(view.running) > 10
    jid = str(first.job_id)
    for r in view.running:
        if r.job.id != jid:
            assert r.gpus == tuple(view.state.job_gpus(r.job.id)), r.job.id
    both = tuple(view.state.job_gpus(jid))
    assert len(both) == len(idx) + 2
    # what the state held when each record was read: its first GPUs (in fabric order), then all
    assert [r.gpus for r in view.running if r.job.id == jid] == [both[: len(idx)], both]


def test_comment_options_and_tiers_as_before():
    maps = TierMap.parse(["qos:urgent=high", "partition:cheap=spot"])
    job = next(j for j in ReplayClient(*map(json.dumps, recorded(VERSIONS[0]))).jobs())
    for comment, qos, part, want in [
        ("fabric:tier=high,within=leaf", "", "batch", ("within=leaf", "high")),
        ("fabric: within=leaf , tier=spot", "", "batch", ("within=leaf", "spot")),
        ("fabric:tier=bogus", "", "spot", ("", "spot")),  # a partition named after a tier
        ("fabric", "urgent", "batch", ("", "high")),
        ("fabric:tier=high", "normal,urgent", "cheap", ("", "high")),
    ]:
        j = replace(job, comment=comment, qos=qos, partition=part)
        tiers = maps if qos or part == "cheap" else None
        assert split_options(j, tiers) == want, comment
        assert split_options(j, tiers) == want  # asked again: the same answer
    assert lowest({}, "a,b") is None and lowest({"b": "spot"}, " a, b") == "spot"


def test_a_gpu_listed_twice_is_refused_as_before():
    st = ClusterState(FAB)
    g = FAB.host_gpus(FAB.hosts[0])
    with pytest.raises(ConfigError, match=f"lists GPU '{g[1]}' twice"):
        st.allocate("x", [g[3], g[1], g[2], g[1], g[3]])
    st.allocate("y", [g[2], g[0]])
    assert st.job_gpus("y") == [g[0], g[2]]
