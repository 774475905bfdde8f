"""The per-fabric ring memo (placement.ringmemo): a remembered ring equals the plain computation."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.placement.collective import (CollectiveParams, NoNetwork, _channel_edges, _domains, _paths,
                                             allreduce_and_load, collective_time, fabric_net, ring_flows)
from fabric_hpc.placement.netmodel import _domains_plain
from fabric_hpc.placement.ringmemo import Flows, RingMemo, ring_memo
from fabric_hpc.topology import build, generators


def _plain_ring_flows(fab, gpus: np.ndarray, per_rank_bytes: float, params: CollectiveParams,
                      ecmp: int | None) -> Flows:
    """ring_flows as it was computed before the memo (one pass, nothing remembered)."""
    net = fabric_net(fab)
    g, dom = _domains_plain(fab, np.asarray(gpus, np.int64))
    m = int(dom[-1]) + 1 if len(g) else 0
    k = np.bincount(dom, minlength=m)[dom]
    share = np.where(k > 1, 1.0 if m == 1 else (k - 1) / k, 0.0)
    on = share > 0
    nf = int(on.sum())
    flows, res = [np.arange(nf)], [net.nvl[g[on]]]
    size, lat = [per_rank_bytes * share[on]], [np.full(nf, fab.index.nvlink_latency_us)]
    if m >= 2:
        src, dst = _channel_edges(net, g, dom, m, params)
        chans = len(src) // m
        f, r, la = _paths(fab, net, src, dst, None if ecmp is None else (ecmp, np.tile(np.arange(chans), m)))
        flows.append(f + nf)
        res.append(r)
        size.append(np.full(len(src), per_rank_bytes / chans))
        lat.append(la)
    return Flows(*(np.concatenate(x) for x in (flows, res, size, lat)))


def _same(a: Flows, b: Flows) -> None:
    for x, y in ((a.flow, b.flow), (a.res, b.res), (a.size, b.size), (a.lat_us, b.lat_us)):
        assert x.dtype == y.dtype and np.array_equal(x, y)  # bit for bit, not approximately


@pytest.fixture(scope="module")
def pod():
    return build(generators.superpod(sus=2, hosts_per_su=4))


@pytest.mark.parametrize("ecmp", [None, 7])
def test_remembered_ring_flows_equal_the_plain_computation(pod, ecmp):
    rng = np.random.default_rng(5)
    params = CollectiveParams()
    ring_memo(pod).clear()
    sets = [np.unique(rng.choice(len(pod.gpus), size=int(rng.integers(2, 40)), replace=False)) for _ in range(25)]
    sets += [np.arange(8), np.arange(16), np.arange(3, 5)]  # one host, two hosts, two GPUs of one host
    for _ in range(2):  # first pass fills the memo, second one reads it
        for gpus in sets:
            for b in (1.0, 2.0 * 255 / 256 * 2**28, 3e6 / 7):
                _same(ring_flows(pod, gpus, b, params, ecmp=ecmp), _plain_ring_flows(pod, gpus, b, params, ecmp))
            g, dom = _domains(pod, gpus)
            pg, pdom = _domains_plain(pod, gpus)
            assert np.array_equal(g, pg) and np.array_equal(dom, pdom)
    assert ring_memo(pod).hits > 0


def test_collective_times_are_the_same_with_a_warm_memo(pod):
    rng = np.random.default_rng(11)
    sets = [np.unique(rng.choice(len(pod.gpus), size=int(rng.integers(2, 64)), replace=False)) for _ in range(10)]
    ring_memo(pod).clear()
    cold = [(collective_time(pod, g, 2**28, algo="ring"), allreduce_and_load(pod, g, 2**28)) for g in sets]
    warm = [(collective_time(pod, g, 2**28, algo="ring"), allreduce_and_load(pod, g, 2**28)) for g in sets]
    for (t0, (a0, l0)), (t1, (a1, l1)) in zip(cold, warm, strict=True):
        assert t0 == t1 and a0 == a1 and np.array_equal(l0, l1)


def test_remembered_arrays_are_read_only(pod):
    fl = ring_flows(pod, np.arange(16), 1.0, CollectiveParams())
    for a in (fl.flow, fl.res, fl.lat_us):
        with pytest.raises(ValueError):
            a[0] = 0
    fl.size[0] = 0.0  # the bytes are the caller's own
    assert ring_flows(pod, np.arange(16), 1.0, CollectiveParams()).size[0] != 0.0


def test_memo_is_bounded_least_recently_used_first():
    memo = RingMemo(size=3)
    for k in "abc":
        memo.get(k, lambda k=k: k.upper())
    assert memo.get("a", lambda: "new") == "A"  # a is now the most recent
    memo.get("d", lambda: "D")  # evicts b, the least recently used
    assert len(memo) == 3 and memo.get("b", lambda: "b again") == "b again"
    assert memo.get("a", lambda: "new") == "A"
    off = RingMemo(size=0)
    assert off.get("x", lambda: 1) == 1 and len(off) == 0


def test_failures_are_not_remembered():
    memo = RingMemo()

    def fail() -> int:
        raise NoNetwork("no NIC")

    for _ in range(2):
        with pytest.raises(NoNetwork):
            memo.get("k", fail)
    assert memo.misses == 2 and len(memo) == 0
