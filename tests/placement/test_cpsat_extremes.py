"""CP-SAT at extreme but accepted inputs: huge weights, a 1 PiB all-reduce on a 1 Gb/s fabric, links
of a few kB/s. The integer model's coefficients used to pass int64: huge weights raised a raw
TypeError from OR-Tools or gave MODEL_INVALID, reported as "time limit hit"; a collective of hours
at µs resolution times the lexicographic weight did the same. Now the placement terms are scaled to
at most 2**40 (a coarser, noted resolution), the collective-first objective falls back to the
placement terms under phase 1's collective bound, and a model no integer scale holds hands back
greedy's answer saying why (docs/placement.md, "CP-SAT at extreme inputs")."""

from __future__ import annotations

import pytest

from fabric_hpc.placement import ClusterState, SolveOptions, place
from fabric_hpc.placement.cost import lex_key
from fabric_hpc.topology import Fabric, build, generators

OPTIONS = SolveOptions(time_limit_s=1.0)


def _slow(nic_gbps: float, uplink_gbps: float):
    """16 hosts × 8 GPUs under 4 leaves with slow NICs and uplinks (GB/s)."""
    spec = generators.leaf_spine(16).model_dump()
    for ht in spec["host_types"].values():
        ht["nic_gbps"] = nic_gbps
    for g in spec["network"]["groups"]:
        if g.get("uplink_gbps") is not None:
            g["uplink_gbps"] = uplink_gbps
    return build(spec)


@pytest.fixture(scope="module")
def gbit():
    return _slow(0.125, 0.125)  # 1 Gb/s NICs and leaf uplinks


@pytest.fixture(scope="module")
def crawl():
    """_slow's fabric at 8 kb/s (1e-6 GB/s): a 1 PiB all-reduce takes ~70 years. Below the fabric file's
    floor (spec.MIN_GBPS, 0.001 GB/s: 1 PiB there is ~1e15 µs, near cpsat_scale's 2**51), so built in
    code past it (model_copy does not validate) to reach the beyond-any-scale fallback all the same."""
    spec = generators.leaf_spine(16)
    assert spec.network is not None
    types = {n: ht.model_copy(update={"nic_gbps": 1e-6}) for n, ht in spec.host_types.items()}
    groups = [g if g.uplink_gbps is None else g.model_copy(update={"uplink_gbps": 1e-6})
              for g in spec.network.groups]
    return Fabric(spec.model_copy(update={"host_types": types,
                                          "network": spec.network.model_copy(update={"groups": groups})}))


def _both(fab, text, weights):
    state = ClusterState(fab)
    cp = place(fab, state, text, solver="cpsat", weights=weights, options=OPTIONS)
    gr = place(fab, state, text, solver="greedy", weights=weights, options=OPTIONS)
    return cp, gr


HUGE = [{"span": 1e12}, {"host": 1e18}, {"frag": 1e300}, {"pristine_break": 1e300}, {"span_growth": 1e200},
        {"message_mb": 2**30, "span": 1e15, "frag": 1e15}]


@pytest.mark.parametrize("weights", HUGE)
@pytest.mark.parametrize("text", ["gpus=20", "nodes=5,gpus=8", "gpus=32,tp=8,pp=2"])
def test_huge_weights_solve(gbit, text, weights):
    cp, gr = _both(gbit, text, weights)
    assert cp.stats["status"] == "OPTIMAL"
    assert not any("time limit" in n for n in cp.notes)
    assert lex_key(cp.breakdown) <= lex_key(gr.breakdown)


@pytest.mark.parametrize("text", ["gpus=20", "nodes=5,gpus=8"])
def test_long_collective_keeps_it_first(gbit, text):
    """1 PiB over 1 Gb/s: ~5 h of collective in µs times LEX passes int64; still solved, collective first."""
    cp, gr = _both(gbit, text, {"message_mb": 2**30})
    assert cp.breakdown["comm_ms"] > 1e9
    assert cp.stats["status"] == "OPTIMAL"
    assert lex_key(cp.breakdown) <= lex_key(gr.breakdown)


@pytest.mark.parametrize("text", ["gpus=20", "nodes=5,gpus=8", "gpus=32,tp=8,pp=2"])
def test_beyond_any_scale_is_greedy_said_so(crawl, text):
    """A collective past 2**51 µs: not "proven infeasible", not "time limit": greedy's answer, and why."""
    cp, gr = _both(crawl, text, {"message_mb": 2**30})
    assert cp.gpus == gr.gpus and cp.solver == "cpsat" and cp.optimal is False
    assert any("cannot hold these magnitudes" in n for n in cp.notes)


def test_normal_weights_unchanged(gbit):
    cp = place(gbit, ClusterState(gbit), "gpus=20", solver="cpsat", options=OPTIONS)
    assert cp.optimal and not any("CP-SAT's integer" in n or "resolution" in n for n in cp.notes)


def test_deterministic_at_extremes(gbit):
    weights = {"host": 1e18, "message_mb": 2**30}
    a, b = (place(gbit, ClusterState(gbit), "gpus=20", solver="cpsat", weights=weights, options=OPTIONS)
            for _ in range(2))
    assert a.gpus == b.gpus and a.breakdown == b.breakdown


@pytest.mark.parametrize("solver", ["cpsat", "greedy"])
def test_span_growth_past_a_float_is_named(solver):
    """span · span_growth^(level-1) past a float's range (a fabric with a core level) raised a raw
    OverflowError from every solver; now a ConfigError naming the weight and the fix."""
    from fabric_hpc.errors import ConfigError

    fab = build(generators.superpod(8))  # host, nvlink, leaf, spine, core
    with pytest.raises(ConfigError, match="span_growth") as err:
        place(fab, ClusterState(fab), "gpus=300", solver=solver, weights={"span_growth": 1e200},
              options=OPTIONS)
    assert "smaller span_growth" in err.value.hint
    weights = {"span": 0.0, "span_growth": 1e200}  # no span weight at all: nothing to overflow
    placed = place(fab, ClusterState(fab), "gpus=300", solver=solver, weights=weights, options=OPTIONS)
    assert len(placed.gpus) == 300
