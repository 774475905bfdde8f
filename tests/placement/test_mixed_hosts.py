"""A mixed cluster: 4-GPU PCIe hosts with one slow NIC beside 8-GPU NVLink hosts. The collective comes
first in the cost, but CP-SAT's linearisation took one fabric-wide NVLink and NIC rate and greedy's best
fit knows no host class, so on an empty cluster every solver filled a PCIe host (``gpus=4``: 15.348 ms
against 1.094 ms on an NVLink host). Also: hosts without a NIC cannot carry a multi-host gang."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, SolveOptions, place
from fabric_hpc.placement.problem import Problem
from fabric_hpc.placement.request import parse_request
from fabric_hpc.topology import build
from tests.placement.brute import checked_optimal_claims

OPTIONS = SolveOptions(time_limit_s=5.0, workers=1)

PCIE = {"gpus": 4, "gpu_model": "A100-PCIE-40GB", "gpu_memory_gb": 40, "sockets": 2, "cores_per_socket": 32,
        "memory_gb": 512, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 32, "nics": 1, "nic_gbps": 25,
        "gpu_numa": [0, 0, 1, 1], "features": ["a100", "pcie"]}
SXM = {"gpus": 8, "gpu_model": "H100-SXM5-80GB", "gpu_memory_gb": 80, "sockets": 2, "cores_per_socket": 56,
       "memory_gb": 2048, "nvlink_gbps": 900, "nvswitches": 4, "pcie_gbps": 64, "nics": 8, "nic_gbps": 50,
       "features": ["h100", "nvlink"]}


def mixed(a: int = 4, h: int = 4, *, sxm_nics: int = 8):
    """The tester's fabric: ``a`` PCIe hosts on one leaf, ``h`` NVLink hosts on another, one spine
    (``sxm_nics=0``: the NVLink hosts have no NIC, so there is no network section: a fabric file's
    network needs a NIC on every host)."""
    sxm = {**SXM, "nics": sxm_nics} if sxm_nics else {**SXM, "nics": 0, "nic_gbps": 0}
    spec = {"fabric": 1, "name": "site-mixed", "host_types": {"a100-pcie": PCIE, "h100-sxm": sxm},
            "hosts": [{"names": f"a[1-{a}]", "type": "a100-pcie", "rack": "r1"},
                      {"names": f"h[1-{h}]", "type": "h100-sxm", "rack": "r2"}]}
    if sxm_nics:
        spec["network"] = {"levels": ["leaf", "spine"], "groups": [
            {"name": "leaf-a", "level": "leaf", "switches": 1, "hosts": f"a[1-{a}]", "uplink_gbps": 50},
            {"name": "leaf-h", "level": "leaf", "switches": 8, "hosts": f"h[1-{h}]", "uplink_gbps": 200},
            {"name": "spine", "level": "spine", "switches": 2, "children": ["leaf-a", "leaf-h"]}]}
    return build(spec)


# The tester's numbers on the empty cluster: before, every solver's answer was a PCIe host (pair)
CASES = [("gpus=4", 1.094, 15.348), ("gpus=4,tp=4", 0.21, 2.88), ("nodes=2,gpus=4", 2.534, 20.025),
         ("gpus=2", 0.728, 10.231)]


@pytest.mark.parametrize("solver", ["cpsat", "greedy"])
@pytest.mark.parametrize(("text", "fast", "slow"), CASES)
def test_the_nvlink_hosts_win_on_an_empty_mixed_cluster(solver, text, fast, slow):
    fab = mixed()
    placed = place(fab, ClusterState(fab), text, solver=solver, options=OPTIONS)
    assert all(h.startswith("h") for h in placed.hosts), placed.hosts
    assert placed.breakdown["comm_ms"] == pytest.approx(fast, abs=0.01)
    assert placed.breakdown["comm_ms"] < slow / 5


def test_cpsat_proves_the_nvlink_host_by_its_own_bound():
    """CP-SAT's own model now tells the classes apart: its collective bound is the NVLink host's exact
    time (it was 1,094 µs for every host, the PCIe host's 15,348 included) and the answer is proven."""
    fab = mixed()
    placed = place(fab, ClusterState(fab), "gpus=4", solver="cpsat", options=OPTIONS)
    assert placed.optimal is True and placed.stats["comm_us_bound"] == 1094
    assert not placed.notes
    slow = place(fab, ClusterState(fab), "gpus=4,include=a1", solver="cpsat", options=OPTIONS)
    assert slow.optimal is True and slow.stats["comm_us_bound"] == round(slow.breakdown["comm_ms"] * 1000)


def test_a_pcie_host_is_used_when_the_nvlink_hosts_are_full():
    fab = mixed()
    state = ClusterState(fab)
    state.allocate("big", [g for g in fab.gpus if g.startswith("h")][:-2])  # h4 keeps 2 free GPUs
    placed = place(fab, state, "gpus=4", solver="cpsat", options=OPTIONS)
    assert placed.hosts == ("a1",)  # one PCIe host beats h4's 2 GPUs + a NIC hop to another class


def test_an_optimal_claim_on_a_mixed_cluster_is_brute_force_optimal():
    """Soundness of the per-class bound: where CP-SAT says optimal, no placement is cheaper (also where
    the answer mixes classes: a PCIe host beside the NVLink hosts' free GPUs)."""
    fab = mixed(2, 2)
    claimed = sum(checked_optimal_claims(fab, text, range(5), 0.4, OPTIONS)
                  for text in ("gpus=4", "gpus=10", "nodes=3,gpus=2", "gpus=14"))
    assert claimed >= 8


@pytest.mark.parametrize("text", ["gpus=4", "gpus=8", "gpus=16", "nodes=2,gpus=8", "gpus=4,tp=4"])
def test_a_homogeneous_fabric_keeps_its_answers(text):
    """One class of hosts: the model and the fills are those of before (no per-class terms)."""
    from fabric_hpc.placement.greedy import class_caps

    fab = build({**_homogeneous()})
    p = Problem(fab, ClusterState(fab), parse_request(text))
    assert class_caps(p) == []
    placed = place(fab, ClusterState(fab), text, solver="cpsat", options=OPTIONS)
    assert placed.hosts[0] == "h1"


def _homogeneous() -> dict:
    return {"fabric": 1, "name": "same", "host_types": {"h100-sxm": SXM},
            "hosts": [{"names": "h[1-4]", "type": "h100-sxm", "rack": "r2"}]}


# -- hosts without a NIC ---------------------------------------------------------------------------
def no_nic(hosts: int = 6):
    """The tester's nonet.yaml: DGX-like hosts with ``nics: 0`` and no network."""
    host = {**SXM, "nics": 0, "nic_gbps": 0}
    return build({"fabric": 1, "name": "site-hgx6", "host_types": {"hgx-h100": host},
                  "hosts": [{"names": f"gpu[01-{hosts:02d}]", "type": "hgx-h100"}]})


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree"])
@pytest.mark.parametrize("text", ["gpus=16", "nodes=2,gpus=8", "gpus=16,pp=2", "gpus=16,tp=8",
                                  "nodes=2,gpus=2"])
def test_a_gang_across_hosts_without_a_nic_is_infeasible(solver, text):
    """Before: "placed" (exit 0) with comm_ms 1000000.0 (NO_NETWORK_MS shown as a time), pp=2 printing
    "cannot run"."""
    fab = no_nic()
    with pytest.raises(PlacementInfeasible) as err:
        place(fab, ClusterState(fab), text, solver=solver, options=OPTIONS)
    exp = err.value.explanation
    assert exp["constraint"] == "network" and exp["never"] is True
    assert "have no NIC" in err.value.message and "hgx-h100" in err.value.message
    fewer = "nodes=1 (one host)" if "nodes" in text else "at most 8 GPUs (one host)"
    assert "add nics to the host type (hgx-h100: nics: 0)" in err.value.hint and fewer in err.value.hint
    assert err.value.exit_code == 4


@pytest.mark.parametrize("text", ["gpus=8", "gpus=8,pp=2", "gpus=8,tp=4", "nodes=1,gpus=8", "gpus=3"])
def test_a_gang_inside_one_host_without_a_nic_is_placed(text):
    fab = no_nic()
    placed = place(fab, ClusterState(fab), text, solver="cpsat", options=OPTIONS)
    assert len(placed.hosts) == 1 and placed.breakdown["comm_ms"] < 10


def test_hosts_with_a_nic_carry_a_gang_the_others_cannot():
    """PCIe hosts with a NIC beside NVLink hosts without one: 16 GPUs fit only on the PCIe hosts (slow, but
    the collective runs); 20 fit nowhere, and a busy PCIe host is a wait, not a never."""
    fab = mixed(sxm_nics=0)
    placed = place(fab, ClusterState(fab), "gpus=16", solver="cpsat", options=OPTIONS)
    assert set(placed.hosts) == {"a1", "a2", "a3", "a4"} and placed.breakdown["comm_ms"] < 1000
    with pytest.raises(PlacementInfeasible) as err:
        place(fab, ClusterState(fab), "gpus=20", solver="cpsat", options=OPTIONS)
    assert err.value.explanation["never"] is True
    assert "hosts with a NIC hold only 16 GPUs" in err.value.message
    state = ClusterState(fab)
    state.allocate("j1", ["a1/gpu0"])
    with pytest.raises(PlacementInfeasible) as err:
        place(fab, state, "gpus=16", solver="greedy", options=OPTIONS)
    assert not err.value.explanation.get("never") and err.value.explanation["constraint"] == "network"
    assert "hosts with a NIC have 15 free" in err.value.message


def test_a_placement_that_cannot_run_is_reported_not_returned():
    """The safety net behind the checks (necessary conditions only): a placement whose collective cannot
    run (comm_ms at NO_NETWORK_MS) is a PlacementInfeasible naming the network."""
    from fabric_hpc.placement.explain import network_fails

    fab = no_nic()
    p = Problem(fab, ClusterState(fab), parse_request("gpus=16"))
    placed = p.finish({0: 8, 1: 8}, "test", 0.0, optimal=None)
    err = network_fails(p, placed)
    assert err is not None and err.explanation["constraint"] == "network" and "cannot run" in err.message
    one = Problem(fab, ClusterState(fab), parse_request("gpus=8"))
    assert network_fails(one, one.finish({0: 8}, "test", 0.0, optimal=None)) is None
