"""The simulator's and the fabric model's Python API name a wrong argument with a ConfigError (a policy
name for a policy, a spec for a fabric, None for jobs or a trace, a free mask of the wrong length);
these raised AttributeError/TypeError/numpy errors."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import make_policy
from fabric_hpc.sim import Simulator, load_trace, summarize
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def fab():
    return build(generators.leaf_spine(hosts=4, hosts_per_leaf=2))


@pytest.fixture(scope="module")
def jobs():
    return load_trace("synthetic:jobs=5")


@pytest.mark.parametrize("which,match", [("policy-none", "policy must be a scheduling policy"),
                                         ("policy-str", "policy must be a scheduling policy"),
                                         ("fab-none", "fab must be a built Fabric"),
                                         ("fab-spec", "fab must be a built Fabric"),
                                         ("jobs-none", "jobs must be a list of scheduler Jobs"),
                                         ("jobs-dicts", "jobs must be a list of scheduler Jobs")])
def test_simulator_names_the_wrong_argument(fab, jobs, which, match):
    args = {"fab": fab, "policy": make_policy("fabric"), "jobs": jobs}
    bad = {"policy-none": ("policy", None), "policy-str": ("policy", "fabric"), "fab-none": ("fab", None),
           "fab-spec": ("fab", generators.leaf_spine(hosts=4, hosts_per_leaf=2)), "jobs-none": ("jobs", None),
           "jobs-dicts": ("jobs", [{"id": "1"}])}[which]
    args[bad[0]] = bad[1]
    with pytest.raises(ConfigError, match=match):
        Simulator(args["fab"], args["policy"], args["jobs"])


def test_good_simulator_still_runs(fab, jobs):
    assert summarize(Simulator(fab, make_policy("fabric"), jobs).run())["jobs"] == len(jobs)


def test_load_trace_and_summarize_name_bad_input():
    with pytest.raises(ConfigError, match="trace reference is a string"):
        load_trace(None)
    with pytest.raises(ConfigError, match="summarize takes a simulator result"):
        summarize(None)


def test_rollup_checks_the_mask(fab):
    with pytest.raises(ConfigError, match=f"the fabric has {len(fab.gpus)} GPUs"):
        fab.rollup(np.ones(3, bool))
    with pytest.raises(ConfigError, match="free mask"):
        fab.rollup(None)
    assert sum(fab.rollup(np.ones(len(fab.gpus), bool))["host"].values()) == len(fab.gpus)


def test_allocate_none_gpus_is_named(fab):
    with pytest.raises(ConfigError, match="GPUs must be GPU ids or indices"):
        ClusterState(fab).allocate("j", None)
