"""ECMP in the collective model: each flow takes one hashed uplink port (fabric_hpc.placement.ecmp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.placement.collective import collective_time, fabric_net, fabric_ports, job_load, switch_hops
from fabric_hpc.placement.ecmp import flow_keys, port_of
from fabric_hpc.sim import Contention
from fabric_hpc.topology import build, import_lingjun, open_fabric
from tests.scheduler.helpers import job

ROOT = Path(__file__).resolve().parents[2]
SIZE = 256 * 2**20


@pytest.fixture(scope="module")
def lingjun():
    return build(import_lingjun(ROOT / "data/topologies/alibaba_lingjun2023_topo.csv", oversubscription=2.0))


def _hosts_in_tors(fab, k: int, min_hosts: int = 8) -> list[int]:
    """One host from each of the first ``k`` ToRs with at least ``min_hosts`` hosts."""
    col = fab.index.host_path[:, 0]
    tors, sizes = np.unique(col, return_counts=True)
    return [int(np.flatnonzero(col == t)[0]) for t in tors[sizes >= min_hosts][:k]]


def test_ports_split_each_switch_resource_without_changing_its_capacity(lingjun):
    for fab in (lingjun, open_fabric("superpod:sus=4"), open_fabric("nvl72:racks=8")):
        net, ports = fabric_net(fab), fabric_ports(fab)
        split = np.flatnonzero(ports.base >= 0)
        assert split.size
        for rid in split.tolist():
            n = int(ports.hops[rid] * ports.per[rid])
            assert ports.cap[ports.base[rid]:ports.base[rid] + n].sum() == pytest.approx(net.cap[rid])
            assert port_of(ports, int(ports.base[rid]) + n - 1) == (rid, int(ports.hops[rid]) - 1,
                                                                   int(ports.per[rid]) - 1)


def test_hashing_is_deterministic_and_depends_on_every_key_part():
    src, dst, ch = np.array([1, 1, 1, 2]), np.array([5, 5, 5, 5]), np.array([0, 0, 1, 0])
    a, b = flow_keys(src, dst, 7, ch), flow_keys(src, dst, 7, ch)
    assert (a == b).all() and a[0] == a[1]
    assert len({int(a[0]), int(a[2]), int(a[3]), int(flow_keys(src, dst, 8, ch)[0])}) == 4


def test_a_flow_meeting_at_the_spine_comes_down_from_the_spine_switch_it_went_up_to():
    fab = open_fabric("superpod:sus=4")  # rail-optimised: rail 0 to rail 1 of another host crosses a spine
    net, ports = fabric_net(fab), fabric_ports(fab)
    idx = fab.index
    src = np.flatnonzero(idx.gpu_local == 0)[:64]
    dst = np.flatnonzero(idx.gpu_local == 1)[64:128]
    level, up, down = switch_hops(fab, net, src, dst, (3, np.zeros(len(src), np.int64)))
    one = level == 1
    assert one.any()
    hop_up = [port_of(ports, int(r))[1] for r in up[one, 0]]
    hop_dn = [port_of(ports, int(r))[1] for r in down[one, 0]]
    assert hop_up == hop_dn
    assert len(set(hop_up)) > 1  # the hash spreads flows over the spine switches


def test_colliding_flows_slow_a_ring_and_perfect_spreading_never_does(lingjun):
    hosts = _hosts_in_tors(lingjun, 4)
    gpus = np.flatnonzero(np.isin(lingjun.index.gpu_host, hosts))
    spread = collective_time(lingjun, gpus, SIZE, algo="ring").seconds
    hashed = np.array([collective_time(lingjun, gpus, SIZE, algo="ring", ecmp=s).seconds for s in range(16)])
    assert (hashed >= spread * (1 - 1e-9)).all()  # a hash can only lose to perfect spreading
    assert (hashed > spread * 1.2).any() and np.isclose(hashed, spread).any()


def test_two_jobs_on_different_tors_collide_only_where_their_hashes_meet(lingjun):
    """The same two placements: with spread uplinks they do not slow each other (2:1 ToRs have room
    for both), with ECMP some pairs of salts put flows of both on one port."""
    a_hosts, b_hosts = _hosts_in_tors(lingjun, 2), _hosts_in_tors(lingjun, 3)[1:]
    idx = lingjun.index
    a = np.flatnonzero(np.isin(idx.gpu_host, a_hosts) & (idx.gpu_local < 4))
    b = np.flatnonzero(np.isin(idx.gpu_host, b_hosts) & (idx.gpu_local >= 4))
    alone = collective_time(lingjun, a, SIZE, algo="ring").seconds
    assert collective_time(lingjun, a, SIZE, algo="ring",
                           background=[job_load(lingjun, b, SIZE)]).seconds == pytest.approx(alone)
    slowed = 0
    for s in range(12):
        mine = collective_time(lingjun, a, SIZE, algo="ring", ecmp=s).seconds
        both = collective_time(lingjun, a, SIZE, algo="ring", ecmp=s,
                               background=[job_load(lingjun, b, SIZE, ecmp=100 + s)]).seconds
        assert both >= mine * (1 - 1e-9)
        slowed += both > mine * 1.05
    assert 0 < slowed < 12


def test_the_simulator_counts_jobs_slowed_by_others_under_ecmp(lingjun):
    hosts = _hosts_in_tors(lingjun, 2)
    idx = lingjun.index
    c = Contention(lingjun, ecmp=True)
    started = []
    for i in range(8):  # eight 2-GPU rings over the same two ToRs, one GPU per host each
        g = np.flatnonzero(np.isin(idx.gpu_host, hosts) & (idx.gpu_local == i)).tolist()
        c.start(f"j{i}", job(f"j{i}", 2), g)
        started.append(f"j{i}")
    assert c.contended and c.contended <= set(started)
    assert all(c.stretch(j) >= 1.0 for j in started)


def test_the_fair_share_is_per_flow_not_per_job():
    """One 10 GB/s link, one flow of each job: A's flow carries 2 GB per collective, B's 1 GB. A
    network splits the link per flow (5 GB/s each): A does 2.5 collectives/s, B 5. Filling by job
    progress would give both 3.3."""
    from fabric_hpc.placement.fairshare import fair_rates

    loads, cap = [np.array([2e9]), np.array([1e9])], np.array([10.0])
    assert fair_rates(loads, cap, np.array([2e9, 1e9])) == pytest.approx([2.5, 5.0])
    assert fair_rates(loads, cap) == pytest.approx([10 / 3, 10 / 3])
