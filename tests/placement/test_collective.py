"""The collective-time model (fabric_hpc.placement.collective): channels, paths, contention."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.collective import (CollectiveParams, collective_time, fabric_net, fair_rates,
                                             job_load)
from fabric_hpc.topology import build, generators, load_fabric
from tests.placement.conftest import fabric_without_nics

GIB = 2**30


@pytest.fixture(scope="module")
def sp():
    return load_fabric("topology/dgx-h100-superpod-4su.yaml")


@pytest.fixture(scope="module")
def nvl():
    return load_fabric("topology/gb200-nvl72-8r.yaml")


def gpus_of(fab, host: int, locals_) -> list[int]:
    idx = fab.index
    return [int(i) for i in np.flatnonzero(idx.gpu_host == host) if idx.gpu_local[i] in set(locals_)]


def test_one_gpu_host_limits_the_ring_to_one_nic(sp):
    """gpus=24 as 8+8+7+1 (the issue's example) is ~8x slower than 3x8: one host brings one NIC."""
    split = (gpus_of(sp, 0, range(8)) + gpus_of(sp, 1, range(8)) + gpus_of(sp, 2, range(7))
             + gpus_of(sp, 3, [7]))
    whole = gpus_of(sp, 0, range(8)) + gpus_of(sp, 1, range(8)) + gpus_of(sp, 2, range(8))
    t_split = collective_time(sp, split, GIB, algo="ring")
    t_whole = collective_time(sp, whole, GIB, algo="ring")
    assert t_split.bottleneck == "nic"
    assert 7.0 < t_split.seconds / t_whole.seconds < 8.5



def test_the_ring_has_as_many_channels_as_the_fewest_nics_a_domain_brings(sp):
    """8+7 GPUs: NCCL aligns every rank on the smallest channel count (src/init.cc, AllGather3), so
    the ring has 7 channels, one per NIC: the same NIC-bound bandwidth as 7+7, not an 8th channel
    doubling up on one NIC of the 7-GPU host (the rule until 2026-12-05: 1.75x slower)."""
    uneven = gpus_of(sp, 0, range(8)) + gpus_of(sp, 1, range(7))
    even = gpus_of(sp, 0, range(7)) + gpus_of(sp, 1, range(7))
    t_uneven = collective_time(sp, uneven, GIB, algo="ring")
    t_even = collective_time(sp, even, GIB, algo="ring")
    assert t_uneven.bottleneck == t_even.bottleneck == "nic"
    # per-rank bytes 2(n-1)/n·S: 28/15 vs 26/14 of S over the same 7 NICs
    assert t_uneven.busbw_gbps == pytest.approx(t_even.busbw_gbps, rel=0.01)


def test_no_nic_receives_two_channels_where_rails_differ(sp):
    """4+4 GPUs on rails {3,4,5,7} and {4,5,6,7}: the channel leaving on rail 3 finds no rail-3 NIC
    on the other host and enters on the one NIC no other channel enters (rail 6), not on a NIC that
    already receives a rail-matched channel (which halved the ring's bandwidth: 2x slower)."""
    mixed = gpus_of(sp, 0, [3, 4, 5, 7]) + gpus_of(sp, 1, [4, 5, 6, 7])
    matched = gpus_of(sp, 0, [4, 5, 6, 7]) + gpus_of(sp, 1, [4, 5, 6, 7])
    t_mixed = collective_time(sp, mixed, GIB, algo="ring")
    t_matched = collective_time(sp, matched, GIB, algo="ring")
    assert t_mixed.bottleneck == "nic"
    assert t_mixed.busbw_gbps == pytest.approx(t_matched.busbw_gbps, rel=0.02)

def test_inside_one_host_nvlink_is_the_bottleneck(sp):
    t = collective_time(sp, gpus_of(sp, 0, range(8)), 8 * GIB, algo="ring")
    p = CollectiveParams()
    assert t.bottleneck == "nvlink"
    assert t.busbw_gbps == pytest.approx(450 * p.nvlink_eff, rel=0.01)


def test_rail_matched_beats_cross_rail(sp):
    same = collective_time(sp, gpus_of(sp, 0, [0, 1]) + gpus_of(sp, 1, [0, 1]), GIB, algo="ring")
    cross = collective_time(sp, gpus_of(sp, 0, [0, 1]) + gpus_of(sp, 1, [2, 3]), GIB, algo="ring")
    assert same.seconds <= cross.seconds  # same bandwidth here (non-blocking), more latency across rails


def oversubscribed_pair():
    """4 hosts x 1 GPU, 2 per leaf, each leaf's uplink = one NIC (2:1 oversubscribed)."""
    spec = generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=1)
    data = spec.model_dump()
    for g in data["network"]["groups"]:
        if g.get("uplink_gbps"):
            g["uplink_gbps"] = g["uplink_gbps"] / 2
    return build(type(spec).model_validate(data))


def test_oversubscribed_uplink_is_shared_max_min():
    """Two jobs crossing one 2:1 oversubscribed leaf uplink each get half of it."""
    fab = oversubscribed_pair()
    a, b = [0, 2], [1, 3]  # hosts n1+n3 and n2+n4: both rings cross leaf1 <-> leaf2
    alone = collective_time(fab, a, GIB, algo="ring")
    shared = collective_time(fab, a, GIB, algo="ring", background=[job_load(fab, b, GIB)])
    assert alone.bottleneck == "nic"
    assert shared.bottleneck == "uplink"
    assert shared.seconds == pytest.approx(2 * alone.seconds, rel=0.02)


def test_contention_slows_a_job_down_on_a_shared_nic():
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=4))  # 1 NIC per host
    idx = fab.index
    a = np.flatnonzero((idx.gpu_host == 0) & (idx.gpu_local < 2)).tolist() + \
        np.flatnonzero((idx.gpu_host == 2) & (idx.gpu_local < 2)).tolist()
    b = np.flatnonzero((idx.gpu_host == 0) & (idx.gpu_local >= 2)).tolist() + \
        np.flatnonzero((idx.gpu_host == 2) & (idx.gpu_local >= 2)).tolist()
    alone = collective_time(fab, a, GIB, algo="ring")
    shared = collective_time(fab, a, GIB, algo="ring", background=[job_load(fab, b, GIB)])
    assert shared.seconds == pytest.approx(2 * alone.seconds, rel=0.05)


def test_fair_rates_progressive_filling():
    assert fair_rates([], np.array([10.0])).size == 0  # no jobs: no rates (not a concatenate error)
    cap = np.array([10.0, 10.0])
    # job 0 uses both resources, job 1 only the first: 5/5 on resource 0, job 0 frozen at 5
    loads = [np.array([1e9, 1e9]), np.array([1e9, 0.0])]
    assert fair_rates(loads, cap) == pytest.approx([5.0, 5.0])
    # job 1 alone on resource 1 takes what job 0 leaves
    loads = [np.array([1e9, 0.0]), np.array([1e9, 1e9]), np.array([0.0, 1e9])]
    assert fair_rates(loads, cap) == pytest.approx([5.0, 5.0, 5.0])
    loads = [np.array([2e9, 0.0]), np.array([0.0, 1e9])]
    assert fair_rates(loads, cap) == pytest.approx([5.0, 10.0])


def test_kinds_and_algorithms(sp, nvl):
    g = gpus_of(sp, 0, range(8)) + gpus_of(sp, 5, range(8))
    ar = collective_time(sp, g, GIB, algo="ring")
    ag = collective_time(sp, g, GIB, kind="allgather")
    rs = collective_time(sp, g, GIB, kind="reducescatter")
    a2a = collective_time(sp, g, GIB, kind="alltoall")
    assert ag.seconds == pytest.approx(rs.seconds) == pytest.approx(ar.seconds / 2, rel=0.05)
    assert a2a.seconds > ag.seconds  # half of every rank's bytes cross the network
    small = collective_time(nvl, list(range(144)), 1024, algo="auto")
    assert small.algo == "tree"  # latency-bound: fewer steps
    assert collective_time(nvl, [3], GIB).seconds == 0.0
    with pytest.raises(ConfigError):
        collective_time(nvl, [0, 1], GIB, kind="broadcast")


def test_more_bytes_never_faster(sp):
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = rng.choice(len(sp.gpus), size=int(rng.integers(2, 40)), replace=False)
        t1 = collective_time(sp, g, 64 * 2**20).seconds
        t2 = collective_time(sp, g, 128 * 2**20).seconds
        assert t2 >= t1


def test_net_resources_follow_the_graph(sp, nvl):
    net = fabric_net(sp)
    assert (net.kind == 0).sum() == len(sp.gpus)
    assert (net.kind == 1).sum() == 2 * 8 * len(sp.hosts)  # tx and rx per NIC
    assert fabric_net(nvl).cap[0] == pytest.approx(900.0)  # 1.8 TB/s both directions


def test_hosts_without_a_nic_cannot_be_joined():
    fab = fabric_without_nics(hosts=2)
    assert collective_time(fab, [0, 1], GIB).seconds < np.inf  # inside one host: NVLink
    assert collective_time(fab, [0, 2], GIB).seconds == np.inf


def test_nvls_only_inside_one_sharp_domain(sp, nvl):
    """NVLink SHARP: faster than the ring inside a DGX H100 or an NVL72 rack; not across hosts or
    racks (NVLS-Tree is not modelled), not on A100 NVSwitches, not for other collectives."""
    host = gpus_of(sp, 0, range(8))
    auto, ring = collective_time(sp, host, GIB), collective_time(sp, host, GIB, algo="ring")
    assert auto.algo == "nvls" and auto.seconds < 0.8 * ring.seconds
    assert collective_time(sp, host, GIB, nvls=False).algo in ("ring", "tree")
    rack = collective_time(nvl, list(range(72)), GIB)
    assert rack.algo == "nvls"
    two_hosts = host + gpus_of(sp, 1, range(8))
    assert collective_time(sp, two_hosts, GIB).algo != "nvls"
    assert collective_time(nvl, list(range(144)), GIB).algo != "nvls"
    for bad in (lambda: collective_time(sp, two_hosts, GIB, algo="nvls"),
                lambda: collective_time(sp, host, GIB, kind="allgather", algo="nvls")):
        with pytest.raises(ConfigError):
            bad()
    data = generators.superpod(sus=1, hosts_per_su=4).model_dump()
    for ht in data["host_types"].values():
        ht.update(gpu_model="A100-SXM4-80GB", nvlink_gbps=600.0)
    a100 = build(type(generators.superpod()).model_validate(data))
    assert collective_time(a100, gpus_of(a100, 0, range(8)), GIB).algo != "nvls"
    with pytest.raises(ConfigError):
        collective_time(a100, gpus_of(a100, 0, range(8)), GIB, algo="nvls")


def test_alltoall_is_rail_matched_pxn(sp):
    """All-to-all between two DGX of one SU: every byte bound for another host is handed over NVLink
    to the GPU on the destination's rail and leaves on its NIC (NCCL's PXN), so on a rail-optimised
    SU nothing climbs above the leaf switches (it put 3.8 of 4.3 GB there when each GPU used its own
    NIC), and the NVLink hop is counted."""
    g = gpus_of(sp, 0, range(8)) + gpus_of(sp, 1, range(8))
    net = fabric_net(sp)
    load = job_load(sp, g, GIB, kind="alltoall")
    assert load[net.kind == 2].sum() == 0.0  # no switch uplink/downlink bytes
    assert load[net.kind == 1].sum() > 0
    # each GPU sends 8 chunks to the other host: 1 on its own rail, 7 through a peer over NVLink
    chunk = GIB / 16
    assert load[net.nvl[g[0]]] == pytest.approx(chunk * 7 + chunk * 7)
    assert collective_time(sp, g, GIB, kind="alltoall").bottleneck in ("nic", "nvlink")


def test_alltoall_across_nvl72_racks_uses_every_nic(nvl):
    """Two full racks: each GPU's bytes for the other rack leave on its own tray's NIC of the
    destination's rail (PXN inside a node), so all 144 NICs carry the same load and the time is the
    rack's bytes over its 72 NICs; it went through one tray's 4 NICs (18x slower) when the proxy
    was the first GPU of the whole NVLink domain on that rail."""
    net = fabric_net(nvl)
    load = job_load(nvl, range(144), GIB, kind="alltoall")
    tx = load[np.unique(net.nic_tx[:144])]
    assert tx.min() == pytest.approx(tx.max()) and tx.min() > 0
    t = collective_time(nvl, range(144), GIB, kind="alltoall")
    rack_bytes = 72 * GIB * 72 / 144  # each GPU sends half its buffer to the other rack
    nic = float(nvl.index.gpu_nic_gbps[0]) * 1e9 * CollectiveParams().net_eff
    assert t.bandwidth_s == pytest.approx(rack_bytes / (72 * nic), rel=0.01)


def test_collective_arguments_are_checked(sp):
    from fabric_hpc.placement.collective_steps import stepped_collective_time

    for gpus in ([-1, 0], [0.5, 1.7], [[0, 1]], [True, False], [0, 10**6]):
        with pytest.raises(ConfigError):
            collective_time(sp, gpus, GIB)
    for size in (-5, float("nan"), float("inf"), "1G", True):
        with pytest.raises(ConfigError):
            collective_time(sp, [0, 9], size)
        with pytest.raises(ConfigError):
            job_load(sp, [0, 9], size)
    with pytest.raises(ConfigError):
        job_load(sp, [0, 9], GIB, kind="bogus")
    with pytest.raises(ConfigError):
        collective_time(sp, [0, 9], GIB, kind="allgather", algo="tree")  # tree is all-reduce only
    with pytest.raises(ConfigError):
        collective_time(sp, [0, 9], GIB, background=[np.array([1.0, 2.0])])
    with pytest.raises(ConfigError):
        collective_time(sp, [0, 9], GIB, params={"net_eff": 0.9})
    for steps in (0, -5, 10**9):
        with pytest.raises(ConfigError):
            stepped_collective_time(sp, [0, 9], GIB, min_steps=steps)
    zero = collective_time(sp, range(16), 0, algo="ring")
    assert zero.bandwidth_s == 0.0 and zero.seconds == zero.latency_s > 0
    assert stepped_collective_time(sp, range(16), 0).seconds == pytest.approx(zero.seconds)


def test_hosts_without_a_nic_run_no_collective_across_them():
    """No NIC, no network: a ring or an all-to-all across two hosts cannot run (inf), and
    job_load says it loads nothing (it raised the internal NoNetwork)."""
    spec = generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=4).model_dump()
    spec.pop("network")
    for ht in spec["host_types"].values():
        ht["nics"] = 0
    fab = build(spec)
    assert collective_time(fab, range(8), GIB).seconds == np.inf
    assert collective_time(fab, range(8), GIB, kind="alltoall").seconds == np.inf
    assert not job_load(fab, range(8), GIB).any()
    assert collective_time(fab, range(4), GIB, kind="alltoall").seconds < np.inf  # inside one host


def test_a_direct_nvlink_mesh_gives_two_gpus_only_their_pair_links():
    """4 A100-class GPUs in a direct NVLink mesh (600 GB/s each, no NVSwitch): two of them reach
    each other over 1/3 of their NVLink (200 GB/s), so their ring is 3x slower per byte than all
    four's, which uses every link; on an NVSwitch host both get the whole NVLink."""
    spec = generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=4).model_dump()
    for ht in spec["host_types"].values():
        ht.update(nvlink_gbps=600.0, nvswitches=0, gpu_model="A100-SXM4-80GB")
    mesh = build(spec)
    p = CollectiveParams()
    two, four = (collective_time(mesh, g, GIB, algo="ring") for g in ([0, 1], range(4)))
    assert two.busbw_gbps == pytest.approx(100 * p.nvlink_eff, rel=0.01)
    assert four.busbw_gbps == pytest.approx(300 * p.nvlink_eff, rel=0.01)
    switched = build(generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=4))
    assert collective_time(switched, [0, 1], GIB, algo="ring").busbw_gbps == pytest.approx(450 * p.nvlink_eff, rel=0.01)
