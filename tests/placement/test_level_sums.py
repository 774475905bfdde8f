"""The placement path's fast sums and caches equal the plain computations they replace.

* ``levels.free_per_host`` (a popcount per host word, or a reshape) and ``levels.domain_sums``
  (``np.add.reduceat`` over domain boundaries) against ``np.bincount`` on random masks and values,
  on fabrics where they apply, on one where domains are not consecutive (Lingjun's ToRs) and on
  one with hosts of two sizes (no per-host word);
* ``levels.run_starts`` against its definition on random id sequences;
* greedy placements, ``greedy_gpus`` and ``may_fit`` with the plain bincount forms patched in
  (same GPUs, same floats, same answers);
* the per-fabric eligible-host cache (``Problem.host_ok``) against a fresh computation, read-only
  and bounded; the host-cost table by ``take`` against the cube's fancy index.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fabric_hpc.placement import parse_request
from fabric_hpc.placement import explain as explain_mod
from fabric_hpc.placement import explain_counts as explain_counts_mod
from fabric_hpc.placement import greedy as greedy_mod
from fabric_hpc.placement import problem as problem_mod
from fabric_hpc.placement.cost import CostWeights
from fabric_hpc.placement.levels import FabricLevels, domain_sums, fabric_levels, free_per_host, run_starts
from fabric_hpc.placement.problem import Problem
from fabric_hpc.scheduler import placer as placer_mod
from fabric_hpc.topology import build, generators, open_fabric
from tests.placement.conftest import random_state
from tests.placement.test_fast_paths import REQUESTS, _placements


@pytest.fixture(scope="module")
def lingjun():
    """847 hosts; ToR and aggregation domains are not runs of consecutive hosts."""
    return open_fabric("topology/alibaba-lingjun-2023.yaml")


@pytest.fixture(scope="module")
def mixed():
    """8 hosts, 2 per leaf: six with 4 GPUs, two (n5, n6) with 2: no per-host word."""
    data = generators.leaf_spine(hosts=8, hosts_per_leaf=2, gpus=4).model_dump()
    data["host_types"]["half"] = {**data["host_types"]["node"], "gpus": 2}
    data["hosts"] = [{"names": "n[1-4]", "type": "node"}, {"names": "n[5-6]", "type": "half"},
                     {"names": "n[7-8]", "type": "node"}]
    return build(type(generators.leaf_spine()).model_validate(data))


FABRICS = ["pod", "small", "nvl", "lingjun", "mixed"]


def _plain_per_host(lv: FabricLevels, gpu_host: np.ndarray, free: np.ndarray) -> np.ndarray:
    return np.bincount(gpu_host, weights=free, minlength=lv.host_gpus.size).astype(np.int64)


def _plain_sums(lv: FabricLevels, level: int, per_host: np.ndarray) -> np.ndarray:
    return np.bincount(lv.host_dom[:, level], weights=per_host, minlength=len(lv.dom_names[level])).astype(np.int64)


def test_fast_paths_apply_where_expected(pod, nvl, lingjun, mixed) -> None:
    assert fabric_levels(pod).dense_gpus == 8 and fabric_levels(nvl).dense_gpus == 4
    assert fabric_levels(mixed).dense_gpus == 0
    assert all(s is not None for s in fabric_levels(pod).dom_starts)
    assert any(s is None for s in fabric_levels(lingjun).dom_starts)


@pytest.mark.parametrize("fabric", FABRICS)
def test_free_per_host_and_domain_sums_equal_bincount(fabric: str, request: pytest.FixtureRequest) -> None:
    fab = request.getfixturevalue(fabric)
    lv, gpu_host = fabric_levels(fab), fab.index.gpu_host
    rng = np.random.default_rng(11)
    plain_lv = dataclasses.replace(lv, dense_gpus=0, dom_starts=())
    for busy in (0.0, 0.3, 0.7, 1.0):
        for _ in range(10):
            free = rng.random(len(fab.gpus)) >= busy
            fast = free_per_host(lv, gpu_host, free)
            assert fast.dtype == np.int64
            assert np.array_equal(fast, _plain_per_host(lv, gpu_host, free))
            assert np.array_equal(free_per_host(plain_lv, gpu_host, free), fast)
            ints = rng.integers(0, 9, len(fab.hosts))
            for level in range(len(lv.chain)):
                for values in (fast, ints, fast >= 2):
                    got = domain_sums(lv, level, values)
                    assert got.dtype == np.int64
                    assert np.array_equal(got, _plain_sums(lv, level, values))
                    assert np.array_equal(domain_sums(plain_lv, level, values), got)


def test_free_per_host_on_a_strided_mask(pod) -> None:
    lv, gpu_host = fabric_levels(pod), pod.index.gpu_host
    wide = np.random.default_rng(3).random(2 * len(pod.gpus)) < 0.5
    free = wide[::2]  # not contiguous: copied before the per-host words are read
    assert np.array_equal(free_per_host(lv, gpu_host, free), _plain_per_host(lv, gpu_host, free))


def _plain_run_starts(ids: np.ndarray) -> np.ndarray | None:
    out, expect = [], 0
    for i, v in enumerate(ids.tolist()):
        if i == 0 or v != ids[i - 1]:
            if v != expect:
                return None
            out.append(i)
            expect += 1
    return np.array(out, np.int64) if out else None


def test_run_starts_equals_definition() -> None:
    rng = np.random.default_rng(5)
    cases = [np.array([], np.int64), np.array([0]), np.array([1]), np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0]),
             np.array([0, 2, 2]), np.array([0, 0, 0])]
    for _ in range(300):
        n = int(rng.integers(1, 30))
        steps = rng.choice([0, 1, 1, 2, -1] if rng.random() < 0.3 else [0, 1], size=n - 1)
        cases.append(np.concatenate(([int(rng.integers(0, 2))], steps)).cumsum())
    for ids in cases:
        got, want = run_starts(ids), _plain_run_starts(ids)
        assert (got is None) == (want is None), ids
        if got is not None:
            assert np.array_equal(got, want)


def _patch_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in (problem_mod, greedy_mod, explain_mod, explain_counts_mod, placer_mod):
        if hasattr(mod, "free_per_host"):
            monkeypatch.setattr(mod, "free_per_host", _plain_per_host)
        if hasattr(mod, "domain_sums"):
            monkeypatch.setattr(mod, "domain_sums", _plain_sums)
    monkeypatch.setattr(greedy_mod, "run_starts", lambda ids: None)


EXTRA = ["gpus=16,max_domains=2,max_domains_level=spine", "nodes=3,gpus_per_node=2,max_domains=2",
         "nodes=2,whole_hosts=true,max_domains=1", "gpus=6,within=leaf"]


@pytest.mark.parametrize("fabric", FABRICS)
def test_placements_equal_with_the_plain_sums(fabric: str, request: pytest.FixtureRequest,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fab = request.getfixturevalue(fabric)
    seeds = range(6) if fabric == "lingjun" else range(25)
    greedy_mod._SPLITS.pop(fab, None)  # child splits remember their boundaries: start without any
    fast = [_placements(fab, seeds, busy, REQUESTS + EXTRA) for busy in (0.3, 0.6)]
    fits, checks = _fits_and_checks(fab, seeds)
    _patch_plain(monkeypatch)
    greedy_mod._SPLITS.pop(fab, None)
    assert [_placements(fab, seeds, busy, REQUESTS + EXTRA) for busy in (0.3, 0.6)] == fast
    assert _fits_and_checks(fab, seeds) == (fits, checks)
    assert sum(isinstance(x, tuple) for x in fast[0] + fast[1]) >= 10


def _fits_and_checks(fab, seeds: range) -> tuple[list, list]:
    lv = fabric_levels(fab)
    fits, checks = [], []
    for seed in seeds:
        state = random_state(fab, seed, busy=0.5)
        for text in REQUESTS + EXTRA:
            req = parse_request(text)
            checks.append(placer_mod.may_fit(req, state.free, fab.index.gpu_host, lv.host_gpus, lv))
            try:
                got = greedy_mod.greedy_gpus(Problem(fab, state, req))
            except Exception as exc:  # an unknown level on this fabric: must match too
                fits.append(type(exc).__name__)
                continue
            fits.append(None if got is None else got.tolist())
    return fits, checks


def test_eligible_hosts_cache_equals_fresh(small, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(problem_mod, "_ELIGIBLE_MAX", 4)
    state = random_state(small, 1)
    texts = ["gpus=2", "gpus=2,include=n[1-4]", "gpus=2,exclude=n[2-3]", "gpus=2,include=n[1-6],exclude=n5",
             "gpus=2,gpu_model=H100-SXM5-80GB", "gpus=2,gpu_model=A100", "gpus=2,features=h100",
             "gpus=2,features=nope", "gpus=2,exclude=n1"]
    for _ in range(3):
        for text in texts:
            p = Problem(small, state, parse_request(text))
            assert np.array_equal(p.host_ok, p._eligible_mask())
            assert not p.host_ok.flags.writeable
            assert len(problem_mod._static(small)["eligible"]) <= 4


@pytest.mark.parametrize("fabric", ["pod", "nvl", "mixed"])
def test_host_cost_table_equals_cube_index(fabric: str, request: pytest.FixtureRequest) -> None:
    fab = request.getfixturevalue(fabric)
    for seed, w in enumerate((None, CostWeights(frag=0.7, host=0.3, job_sizes=(1, 4), job_size_probs=(0.5, 0.5)))):
        p = Problem(fab, random_state(fab, seed, busy=0.4), parse_request("gpus=1"), w)
        width = p.free_mat.shape[1] + 1
        want = problem_mod._cost_cube(p.weights, width)[p.levels.host_gpus, p.free_all]
        assert np.array_equal(p.host_cost_table, want)


def test_eligible_counts_equal_the_mask(small, mixed) -> None:
    for fab in (small, mixed):
        state = random_state(fab, 2)
        for text in ("gpus=2", "gpus=2,include=n[1-6],exclude=n5", "gpus=2,exclude=n[1-8]", "gpus=2,features=nope"):
            p = Problem(fab, state, parse_request(text))
            sizes = p.levels.host_gpus[p.host_ok]
            assert p.eligible_gpus() == int(sizes.sum())
            for g in range(0, 6):
                assert p.eligible_hosts_with(g) == int((sizes >= g).sum())
