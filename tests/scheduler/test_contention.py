"""The simulator's slowdown: the collective model with contention, recomputed as jobs start and end."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.request import Request
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler import Backfill, MultifactorPriority, Scheduler, SolverPlacer
from fabric_hpc.sim import CommProfile, Contention, Simulator, gang_workload
from fabric_hpc.sim.contention import DEFAULT_COMM_BYTES
from fabric_hpc.topology import build, generators
from tests.scheduler.helpers import job


def _oversubscribed(hosts: int = 4, per_leaf: int = 2, ratio: float = 2.0):
    """A leaf-spine fabric whose leaf uplinks carry 1/ratio of what the leaf's NICs can send."""
    spec = generators.leaf_spine(hosts=hosts, hosts_per_leaf=per_leaf)
    groups = [g.model_copy(update={"uplink_gbps": g.uplink_gbps / ratio}) if g.uplink_gbps else g
              for g in spec.network.groups]
    return build(spec.model_copy(update={"network": spec.network.model_copy(update={"groups": groups})}))


def _gpus(fab, *hosts: str) -> list[int]:
    idx = {g: i for i, g in enumerate(fab.gpus)}
    return [idx[g] for h in hosts for g in fab.host_gpus(h)]


def test_two_jobs_sharing_an_uplink_both_slow_down_and_ending_one_speeds_the_other():
    fab = _oversubscribed()  # leaf1: n1 n2, leaf2: n3 n4; uplinks 2:1
    c = Contention(fab)
    a = c.start("a", job("a", 2), _gpus(fab, "n1", "n3"))["a"]  # alone: crosses the spine, no one to share with
    both = c.start("b", job("b", 2), _gpus(fab, "n2", "n4"))
    assert set(both) == {"a", "b"}
    assert both["a"] > a * 1.1 and both["b"] > a * 1.1  # the shared uplink halves each ring's rate
    assert both["a"] == pytest.approx(both["b"])
    sped = c.end("b")
    assert sped == {"a": pytest.approx(a)}
    assert c.stretch("a") < both["a"]


def test_contention_off_ignores_the_other_jobs():
    fab = _oversubscribed()
    c = Contention(fab, contention=False)
    a = c.start("a", job("a", 2), _gpus(fab, "n1", "n3"))
    assert c.start("b", job("b", 2), _gpus(fab, "n2", "n4")) == {"b": pytest.approx(a["a"])}
    assert c.end("b") == {}


def test_a_job_alone_on_nvlink_is_not_slowed():
    fab2 = _oversubscribed(hosts=6, per_leaf=2)
    c2 = Contention(fab2)
    c2.start("x", job("x", 2), _gpus(fab2, "n1", "n3"))
    assert c2.start("nv", job("nv", 1), _gpus(fab2, "n5")) == {"nv": 1.0}  # one host: NVLink only


def test_a_compact_placement_alone_runs_at_its_ideal_speed_and_a_scattered_one_slower():
    fab = _oversubscribed(hosts=4, per_leaf=2, ratio=4.0)
    c = Contention(fab)
    assert c.start("c", job("c", 2), _gpus(fab, "n1", "n2"))["c"] == pytest.approx(1.0)
    c.end("c")
    # one GPU on each of 16 hosts would be worse still; here: 8 GPUs as 4 + 4 over two hosts
    s = c.start("s", job("s", 1), _gpus(fab, "n1")[:4] + _gpus(fab, "n3")[:4])["s"]
    assert s > 1.2  # 8 GPUs on one host talk over NVLink; split, they cross one 400G NIC each


def test_profiles_come_from_meta_with_defaults_and_are_validated():
    from fabric_hpc.scheduler import Job
    from fabric_hpc.placement import Request

    j = Job(id="j", request=Request(gpus=16), submit=0, walltime=10, meta={"comm_fraction": 0.5})
    assert CommProfile.of(j).fraction == 0.5 and CommProfile.of(job("k", 2)) == CommProfile()
    with pytest.raises(ConfigError, match="comm_fraction"):
        CommProfile.of(Job(id="x", request=Request(gpus=2), submit=0, walltime=10, meta={"comm_fraction": 1.5}))
    fab = _oversubscribed()
    quiet = Contention(fab)
    assert quiet.start("q", Job(id="q", request=Request(gpus=16), submit=0, walltime=10, meta={"comm_fraction": 0}),
                       _gpus(fab, "n1", "n3")) == {"q": 1.0}


class _CountRunning:
    """Every running job runs as many times slower as there are jobs running."""

    def __init__(self) -> None:
        self.on: set[str] = set()

    def start(self, job_id, job, gpus):  # noqa: ARG002
        self.on.add(job_id)
        return {j: float(len(self.on)) for j in self.on}

    def end(self, job_id):
        self.on.discard(job_id)
        return {j: float(len(self.on)) for j in self.on}


def _fifo() -> Scheduler:
    prio = MultifactorPriority(weight_fairshare=0, weight_size=0, weight_tier=0, weight_age=1000)
    return Scheduler("fifo", prio, SolverPlacer("greedy"), Backfill.easy())


def test_the_engine_keeps_work_done_and_restretches_the_rest():
    fab = generators.leaf_spine(hosts=2, hosts_per_leaf=2)
    jobs = [job("a", 1, wall=1000, dur=100), job("b", 1, submit=50, wall=1000, dur=100)]
    recs = {r.job.id: r for r in Simulator(build(fab), _fifo(), jobs, slowdown=_CountRunning()).run().records}
    # a: 50 s alone (50 work), then ×2 with b: 50 work in 100 s -> ends at 150
    # b: 50..150 at ×2 (50 work), then alone: 50 s more -> ends at 200
    assert recs["a"].end == pytest.approx(150) and recs["b"].end == pytest.approx(200)
    assert recs["a"].stretch == pytest.approx(1.5) and recs["b"].stretch == pytest.approx(1.5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 16), st.integers(0, 3)), min_size=2, max_size=8),
       st.randoms(use_true_random=False))
def test_stretch_is_never_below_one_under_any_placements(specs, rnd):
    fab = _oversubscribed(hosts=8, per_leaf=2, ratio=3.0)
    c = Contention(fab)
    free = list(range(len(fab.gpus)))
    live = []
    for i, (n, drop) in enumerate(specs):
        if len(free) < n:
            break
        rnd.shuffle(free)
        gpus, free = free[:n], free[n:]
        live.append((f"j{i}", gpus))
        assert all(s >= 1.0 for s in c.start(f"j{i}", job(f"j{i}", 1), gpus).values())
        if drop == 0 and len(live) > 1:
            jid, g = live.pop(0)
            free += g
            assert all(s >= 1.0 for s in c.end(jid).values())
    assert all(c.stretch(j) >= 1.0 for j, _ in live)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1000), st.sampled_from([0.9, 1.5]))
def test_a_jobs_run_time_is_never_below_its_ideal_run_time(seed, load):
    fab = _oversubscribed(hosts=8, per_leaf=2, ratio=2.0)
    jobs = gang_workload(jobs=40, cluster_gpus=len(fab.gpus), seed=seed, load=load,
                         size_mix={1: 0.3, 8: 0.3, 16: 0.2, 32: 0.2})
    res = Simulator(fab, _fifo(), jobs, restore_s=0.0).run()
    for r in res.records:
        if r.status == "done":
            assert r.run_time >= r.job.duration * (1 - 1e-9)
            assert r.stretch >= 1.0 - 1e-9
    assert np.isfinite([r.run_time for r in res.records]).all()


def test_the_reduced_solve_gives_the_full_max_min_share():
    from fabric_hpc.placement.collective import CollectiveParams, effective_cap, fabric_net, fair_rates, job_load

    fab = _oversubscribed(hosts=8, per_leaf=2, ratio=4.0)
    c = Contention(fab)
    # four gangs, all crossing between leaf1/leaf2 and the others: one neighbourhood
    placed = {"a": ("n1", "n3"), "b": ("n2", "n5"), "c": ("n4", "n6"), "d": ("n7", "n8")}
    for j, hosts in placed.items():
        c.start(j, job(j, 2), _gpus(fab, *hosts))
    net = fabric_net(fab)
    cap = effective_cap(net, CollectiveParams())
    shared = (net.kind != 0) & np.isfinite(cap)
    loads = [job_load(fab, _gpus(fab, *h), c._runs[j].profile.bytes)[shared] for j, h in placed.items()]
    full = fair_rates(loads, cap[shared])
    for (j, _), x in zip(placed.items(), full, strict=True):
        assert c.stretch(j) == pytest.approx(c._stretch(c._runs[j], float(x)), rel=1e-9)
    assert max(c.stretch(j) for j in placed) > 1.05  # the share binds somewhere


class _NoRingMemo(Contention):
    """Contention without its per-GPU-set ring memo (every start recomputes the ring)."""

    def _ring(self, g, size, salt, tp, pp):
        self._rings.clear()
        return super()._ring(g, size, salt, tp, pp)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3", "n4"]), st.sampled_from(["n1", "n2", "n3", "n4"]),
                          st.booleans()), min_size=1, max_size=14), st.booleans())
def test_ring_memo_gives_the_stretches_of_a_fresh_computation(ops, ecmp):
    """Gangs start on GPU sets seen before (the memo answers) and end; every stretch change equals
    the one computed without the memo."""
    fab = _oversubscribed()
    memo, fresh = Contention(fab, ecmp=ecmp), _NoRingMemo(fab, ecmp=ecmp)
    running: list[str] = []
    for k, (h1, h2, end) in enumerate(ops):
        if end and running:
            gone = running.pop(0)
            assert memo.end(gone) == fresh.end(gone)
            continue
        jid, gpus = f"j{k}", _gpus(fab, *dict.fromkeys((h1, h2)))
        assert memo.start(jid, job(jid, len(gpus)), gpus) == fresh.start(jid, job(jid, len(gpus)), gpus)
        running.append(jid)
    assert len(memo._rings) > 0


def _tp_job(jid: str, nodes: int, tp: int | None, gpn: int = 8, pp: int | None = None, **meta: float) -> Job:
    return Job(id=jid, request=Request(nodes=nodes, gpus_per_node=gpn, tp=tp, pp=pp), submit=0.0, walltime=100.0,
               duration=100.0, meta={"comm_fraction": 1.0, **meta})


@pytest.mark.parametrize(("tp", "pp"), [(None, None), (2, None), (4, None), (8, None), (None, 2), (4, 2)])
@pytest.mark.parametrize("hosts", [("n1", "n3"), ("n1", "n3", "n5", "n7"), ("n2", "n4", "n6", "n8")])
def test_a_tp_jobs_slowdown_is_the_placement_models_data_parallel_rings(tp, pp, hosts):
    """Alone, a job's stretch is its modelled data-parallel all-reduce (``tp·pp`` rings of 1/(tp·pp)
    of the bytes, ``placement.cost.dp_rings_time``: what the placer minimises) on its hosts over the
    same on compact hosts, so the simulator slows a tp/pp job by the model the placer used (with the
    TP and point-to-point shares set to 0: the data-parallel part alone)."""
    from fabric_hpc.placement.cost import dp_rings_time

    fab = _oversubscribed(hosts=8, per_leaf=2, ratio=3.0)
    size = DEFAULT_COMM_BYTES
    spread = sum(dp_rings_time(fab, np.array(_gpus(fab, *hosts)), size, tp or 1, None, pp or 1))
    compact = sum(dp_rings_time(fab, np.arange(8 * len(hosts)), size, tp or 1, None, pp or 1))
    c = Contention(fab)
    dp_only = {"comm_tp_share": 0.0, "comm_pp_share": 0.0}  # the data-parallel part alone
    stretch = c.start("a", _tp_job("a", len(hosts), tp, pp=pp, **dp_only), _gpus(fab, *hosts))["a"]
    assert stretch == pytest.approx(spread / compact, rel=1e-6)
    assert stretch >= 1.0


def test_tp_groups_cut_a_jobs_network_time_and_tp_jobs_contend():
    """Two hosts, tp=8: eight rings of two GPUs and 1/8 of the bytes put ~half the bytes on each NIC
    that one 16-GPU ring does (as NCCL's tree over two hosts does); two tp jobs on the same uplinks
    slow each other down."""
    from fabric_hpc.placement.collective import collective_time

    fab = _oversubscribed(hosts=4, per_leaf=2, ratio=2.0)
    c = Contention(fab)
    c.start("tp", _tp_job("tp", 2, 8), _gpus(fab, "n2", "n4"))
    ring = collective_time(fab, _gpus(fab, "n2", "n4"), DEFAULT_COMM_BYTES, algo="ring").bandwidth_s
    assert c._runs["tp"].bw == pytest.approx(ring * 8 / 15, rel=0.05)  # (2·1/2·S/8)/(2·15/16·S/8)
    alone = c.stretch("tp")
    both = c.start("tp2", _tp_job("tp2", 2, 8), _gpus(fab, "n1", "n3"))
    assert both["tp"] > alone * 1.1 and both["tp2"] == pytest.approx(both["tp"])


def test_split_tp_groups_and_far_stage_boundaries_slow_a_job_by_their_shares():
    """A TP group split over two hosts all-reduces over their NICs instead of NVLink, and a stage
    boundary that crosses an oversubscribed uplink sends slower than one inside a leaf: each slows
    the job by its share of the communication time; the data-parallel share keeps its own ratio."""
    from fabric_hpc.placement.parallel import slowest_alone, stage_pairs, tp_groups
    from fabric_hpc.sim.contention import TP_BYTES

    fab = _oversubscribed(hosts=4, per_leaf=2, ratio=4.0)  # leaf1: n1 n2, leaf2: n3 n4
    halves = [g for h in ("n1", "n2") for g in _gpus(fab, h)[:4]]  # 4 + 4: every TP group of 8 is split
    shares = {"comm_tp_share": 0.5, "comm_pp_share": 0.0}
    c = Contention(fab, contention=False)
    whole = c.start("whole", _tp_job("whole", 1, 8, **shares), _gpus(fab, "n1"))["whole"]
    split = c.start("split", _tp_job("split", 2, 8, gpn=4, **shares), halves)["split"]
    assert whole == pytest.approx(1.0)
    r_tp = (slowest_alone(fab, tp_groups(fab, np.array(halves), 8), TP_BYTES)
            / slowest_alone(fab, tp_groups(fab, np.arange(8), 8), TP_BYTES))
    assert r_tp > 2.0  # two hosts' NICs instead of NVLink
    r_dp = 1.0  # tp = 8 over 8 GPUs: one-GPU data-parallel rings, nothing to all-reduce
    assert split == pytest.approx(0.5 * r_dp + 0.5 * r_tp, rel=1e-9)

    pp = {"comm_tp_share": 0.0, "comm_pp_share": 0.4}
    near = c.start("near", _tp_job("near", 2, None, pp=2, **pp), _gpus(fab, "n1", "n2"))["near"]
    far = c.start("far", _tp_job("far", 2, None, pp=2, **pp), _gpus(fab, "n2", "n3"))["far"]
    send = [slowest_alone(fab, stage_pairs(fab, np.array(_gpus(fab, *h)), 1, 2), TP_BYTES)
            for h in (("n1", "n2"), ("n2", "n3"))]
    ref = slowest_alone(fab, [np.array([0, 8])], TP_BYTES)  # one pair, each GPU through its own NIC
    assert send[1] > send[0] * 1.5  # the far boundary's 8 pairs share the leaf's 4:1 uplinks
    assert near == pytest.approx(1.0)  # the compact placement itself (dp rings: one host per stage)
    assert far == pytest.approx((0.6 + 0.4 * send[1] / ref) / (0.6 + 0.4 * send[0] / ref), rel=1e-9)


def test_stage_sends_are_weighed_where_the_shares_were_measured():
    """The published shares saw stage boundaries cross the network. A job whose compact stages are
    all inside one NVL72 rack sends over NVLink there, so its step at the compact placement has
    less communication than the reference step, and a placement whose boundary crosses racks (each
    pair through its own NIC, as in the reference) costs the difference, not the shares × NVLink's
    bandwidth over a NIC's."""
    from fabric_hpc.topology import open_fabric
    from fabric_hpc.sim.contention import EXPOSED_PERCENT

    fab = open_fabric("nvl72:racks=2")
    job = Job(id="p", request=Request(gpus=8, pp=2), submit=0.0, walltime=1.0, duration=1.0)
    ecmp = Contention(fab, ecmp=True).start("p", job, np.r_[np.arange(4), 72 + np.arange(4)])["p"]
    c = Contention(fab, contention=False)
    crossing = np.r_[np.arange(4), 72 + np.arange(4)]  # stage 0 in rack 0, stage 1 in rack 1
    stretch = c.start("p", job, crossing)["p"]
    f, s = 0.3, EXPOSED_PERCENT["pp"] / (EXPOSED_PERCENT["pp"] + EXPOSED_PERCENT["dp"])
    q = c._group_slowdowns(np.arange(8), 1, 2)[2]  # compact sends over the reference send
    assert q < 0.2  # NVLink against one NIC
    run = c._runs["p"]
    r_dp = (run.bw + run.lat) / run.ideal  # alone: its data-parallel rings on the compact's
    want = ((1 - f) + f * ((1 - s) * r_dp + s * 1.0)) / ((1 - f) + f * (1 - s + s * q))
    assert stretch == pytest.approx(want, rel=1e-6)
    assert stretch < 1.0 + f * (1 - s) * r_dp + f * s
    assert ecmp == pytest.approx(stretch, rel=0.05)  # ECMP routing: the same sends (spread uplinks)  # never the shares × (NVLink / NIC)


@pytest.mark.parametrize("meta", [{"comm_tp_share": 0.3}, {"comm_pp_share": -0.1},
                                  {"comm_tp_share": 0.7, "comm_pp_share": 0.6}, {"comm_pp_share": "x"}])
def test_group_shares_out_of_range_or_without_groups_are_refused(meta):
    """A TP share for a job without tp (the first case: tp=None) or shares outside 0..1 in sum."""
    bad = Job(id="b", request=Request(nodes=2, gpus_per_node=8, tp=None if "comm_tp_share" in meta and len(meta) == 1
                                      else 8, pp=2), submit=0.0, walltime=1.0, duration=1.0, meta=meta)
    with pytest.raises(ConfigError, match="communication profile"):
        CommProfile.of(bad)
