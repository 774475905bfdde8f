"""Stage sends and cross-domain TP all-reduces contend with other jobs' traffic in the simulator.

A tp/pp job's TP groups that leave an NVLink domain and its stage-to-stage sends join the max-min
fair share of the data-parallel rings (:meth:`fabric_hpc.sim.contention.Contention._add_parts`),
so two pipelines whose sends share a leaf's uplinks slow each other, a data-parallel job beside
them is slowed too, and none of this happens when their links are disjoint.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_hpc.placement.collective import CollectiveParams, effective_cap, fabric_net
from fabric_hpc.placement.fairshare import sparse_fair
from fabric_hpc.placement.request import Request
from fabric_hpc.placement.step import TP_BYTES, group_times, network_parts
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.sim import Contention
from tests.scheduler.helpers import job
from tests.scheduler.test_contention import _gpus, _oversubscribed


def _pp(jid: str, gpus: int = 16, tp: int | None = None, pp: int = 2) -> Job:
    return Job(id=jid, request=Request(gpus=gpus, tp=tp, pp=pp), submit=0.0, walltime=1.0, duration=1.0)


def test_two_pipelines_whose_sends_share_a_leaf_uplink_slow_each_other():
    """leaf1: n1 n2, leaf2: n3 n4, uplinks 2:1. Each job's stage 0 on leaf1 and stage 1 on leaf2:
    both jobs' sends cross the same oversubscribed uplinks; their data-parallel rings stay inside a
    host (NVLink), so only the sends can contend."""
    fab = _oversubscribed()
    c = Contention(fab)
    alone = c.start("a", _pp("a"), _gpus(fab, "n1", "n3"))["a"]
    assert [p.kind for p in c._runs["a"].parts] == ["pp"] and not c._runs["a"].res.size
    both = c.start("b", _pp("b"), _gpus(fab, "n2", "n4"))
    assert set(both) == {"a", "b"}
    assert both["a"] == pytest.approx(both["b"]) and both["a"] > alone * 1.2
    assert c.contended == {"a", "b"}
    assert c.end("b") == {"a": pytest.approx(alone)}


def test_pipelines_on_disjoint_links_do_not_slow_each_other():
    """The same two jobs with each one's stages under one leaf: their sends never meet."""
    fab = _oversubscribed()
    c = Contention(fab)
    a = c.start("a", _pp("a"), _gpus(fab, "n1", "n2"))["a"]
    assert c.start("b", _pp("b"), _gpus(fab, "n3", "n4")) == {"b": pytest.approx(a)}
    assert c.stretch("a") == a and not c.contended


def test_a_data_parallel_job_is_slowed_by_a_pipelines_sends_and_recovers_when_it_ends():
    fab = _oversubscribed()
    c = Contention(fab)
    dp = c.start("d", job("d", 2), _gpus(fab, "n1", "n3"))["d"]
    changed = c.start("p", _pp("p"), _gpus(fab, "n2", "n4"))
    assert changed["d"] > dp * 1.2  # the sends take most of the uplink (eight flows to its ring's one)
    assert "d" in c.contended
    assert c.end("p") == {"d": pytest.approx(dp)}
    off = Contention(fab, contention=False)
    off.start("d", job("d", 2), _gpus(fab, "n1", "n3"))
    assert off.start("p", _pp("p"), _gpus(fab, "n2", "n4")) == {"p": pytest.approx(changed["p"], abs=2.0)}
    assert off.stretch("d") == pytest.approx(dp)


def test_tp_groups_across_hosts_contend_with_another_job():
    """``tp=16`` on two 8-GPU hosts under different leaves: every TP group crosses the uplinks."""
    fab = _oversubscribed()
    c = Contention(fab)
    t = Job(id="t", request=Request(gpus=16, tp=16), submit=0.0, walltime=1.0, duration=1.0)
    alone = c.start("t", t, _gpus(fab, "n1", "n3"))["t"]
    assert [p.kind for p in c._runs["t"].parts] == ["tp"]
    both = c.start("d", job("d", 2), _gpus(fab, "n2", "n4"))
    assert both["t"] > alone and "t" in c.contended


def test_a_job_alone_keeps_its_stretch_where_its_own_parts_share_links():
    """``gpus=32,pp=2`` on four hosts: each stage's data-parallel rings and the sends both use the
    hosts' one NIC. Its parts share among themselves alone (the baseline), so contention on gives
    the stretch alone."""
    fab = _oversubscribed()
    hosts = _gpus(fab, "n1", "n2", "n3", "n4")
    on, off = Contention(fab), Contention(fab, contention=False)
    s_on, s_off = on.start("a", _pp("a", 32), hosts)["a"], off.start("a", _pp("a", 32), hosts)["a"]
    assert s_on == s_off
    run = on._runs["a"]
    assert run.parts and run.res.size
    assert run.rate < off._runs["a"].rate * (1 - 1e-6)  # the sends took part of its rings' NICs
    assert not on.contended


def test_the_send_parts_load_is_the_step_models_sends():
    """The part's bottleneck time alone is :func:`group_times`' sends on a fabric where every pair
    crosses with its own NIC path (the slowest pair is the aggregate's bottleneck)."""
    fab = _oversubscribed()
    g = np.array(_gpus(fab, "n1", "n3"), np.int64)
    (part,) = network_parts(fab, g, 1, 2)
    cap = effective_cap(fabric_net(fab), CollectiveParams())
    assert part.kind == "pp" and part.unit == TP_BYTES
    _, sends = group_times(fab, g, 1, 2)
    assert part.bandwidth_s(cap) == pytest.approx(sends, rel=0.01)  # alone: bandwidth + a few µs of latency
    assert network_parts(fab, np.array(_gpus(fab, "n1"), np.int64), 1, 2) == []  # one host: NVLink only


_HOSTS = st.lists(st.sampled_from(["n1", "n2", "n3", "n4", "n5", "n6"]), min_size=1, max_size=3, unique=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["dp", "pp", "pp4", "tp"]), _HOSTS, st.booleans()), min_size=1, max_size=8),
       st.booleans())
def test_the_contended_stretch_never_beats_the_one_alone(ops, ecmp):
    """Random mixes of data-parallel, pipeline and cross-host TP jobs start and end on a 2:1 fabric;
    every running job's stretch with contention is at least its stretch with contention off, and
    equals it when it is alone."""
    fab = _oversubscribed(hosts=6, per_leaf=2)
    on, off = Contention(fab, ecmp=ecmp), Contention(fab, contention=False, ecmp=ecmp)
    used: dict[str, set[str]] = {}
    for k, (kind, hosts, end) in enumerate(ops):
        if end and used:
            gone = sorted(used)[0]
            on.end(gone), off.end(gone)
            del used[gone]
            continue
        taken = set().union(*used.values()) if used else set()
        hosts = [h for h in hosts if h not in taken]
        if not hosts:
            continue
        n = 8 * len(hosts)
        jid = f"j{k}"
        j = {"dp": job(jid, len(hosts)), "pp": _pp(jid, n) if n % 2 == 0 else job(jid, len(hosts)),
             "pp4": _pp(jid, n, pp=4), "tp": Job(id=jid, request=Request(gpus=n, tp=n if n <= 16 else 8),
                                                 submit=0.0, walltime=1.0, duration=1.0)}[kind]
        gpus = _gpus(fab, *hosts)
        on.start(jid, j, gpus), off.start(jid, j, gpus)
        used[jid] = set(hosts)
        for r in used:
            assert on.stretch(r) >= off.stretch(r) * (1 - 1e-12)
        if len(used) == 1:
            assert on.stretch(jid) == off.stretch(jid)


def full_fair_share(c: Contention, ids: list[str]) -> dict[tuple[str, int], float]:
    """The rate of every network part of the jobs ``ids`` ((job, -1): its data-parallel rings; (job,
    k): its k-th TP/send part) in one max-min filling over every part of every job, each capped at
    its rate alone: what ``Contention`` solves on the saturated links only."""
    ents = []
    for j in ids:
        r = c._runs[j]
        if r.res.size:
            ents.append((j, -1, r.res, r.load, r.rate, r.unit))
        ents += [(j, k, p.res, p.load, p.rate, p.unit) for k, p in enumerate(r.parts)]
    cap = np.r_[c._cap, [e[4] for e in ents]]
    priv = len(c._cap) + np.arange(len(ents))
    job_i = np.concatenate([np.full(len(e[2]) + 1, i) for i, e in enumerate(ents)])
    res = np.concatenate([np.r_[e[2], priv[i]] for i, e in enumerate(ents)])
    amount = np.concatenate([np.r_[e[3], 1e9] for e in ents])
    rates, _ = sparse_fair(job_i, res, amount, cap, len(ents), np.array([e[5] for e in ents]))
    return {(e[0], e[1]): float(x) for e, x in zip(ents, rates, strict=True)}


def test_the_shared_rates_are_the_full_max_min_share_over_every_part():
    """Four jobs (two pipelines, a data-parallel ring, a cross-host TP job) on one neighbourhood:
    each part's rate in the simulator is the max-min share of one filling over every part of every
    job (each capped at its rate alone), the reduced solve over the saturated links only."""
    fab = _oversubscribed(hosts=8, per_leaf=2, ratio=4.0)
    c = Contention(fab)
    jobs = {"a": (_pp("a"), ("n1", "n3")), "b": (_pp("b"), ("n2", "n5")), "d": (job("d", 2), ("n4", "n6")),
            "t": (Job(id="t", request=Request(gpus=16, tp=16), submit=0.0, walltime=1.0, duration=1.0),
                  ("n7", "n8"))}
    for j, (spec, hosts) in jobs.items():
        c.start(j, spec, _gpus(fab, *hosts))
    got = full_fair_share(c, list(jobs))
    for j in jobs:
        run = c._runs[j]
        parts = [got[(j, k)] for k in range(len(run.parts))] if run.parts else None
        assert c.stretch(j) == pytest.approx(c._stretch(run, got.get((j, -1), run.rate), parts), rel=1e-9)
    assert min(c.stretch(j) for j in ("a", "b")) > 1.05 and c.contended >= {"a", "b"}
