"""Multifactor priority: the vectorised computation equals the documented scalar formula bit for bit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.scheduler import (ClassicFairshare, MultifactorPriority, PendingJob, SchedulerInput,
                                  UsageLedger, fabric_policy)

from .helpers import fabric, job

FAB = fabric(hosts=4)


def scalar(prio: MultifactorPriority, view: SchedulerInput) -> dict[str, float]:
    """The formula of the module doc, one job at a time (the reference)."""
    fs = prio.fairshare.factors(view) if prio.weight_fairshare else {}
    total = len(FAB.gpus)
    out = {}
    for p in view.pending:
        j = p.job
        age = min(max(view.now - j.submit, 0.0) / prio.max_age_s, 1.0)
        size = min(j.gpus / total, 1.0)
        size = 1.0 - size if prio.favor_small else size
        short = 0.0
        if prio.weight_walltime and prio.short_by_area:  # GPU-minutes requested, log scale
            short = 1.0 - min(math.log1p(max(j.gpus, 1) * j.walltime / 60)
                              / math.log1p(total * prio.max_walltime_s / 60), 1.0)
        elif prio.weight_walltime:
            short = 1.0 - min(math.log1p(j.walltime / 60) / math.log1p(prio.max_walltime_s / 60), 1.0)
        out[j.id] = (prio.weight_walltime * short + prio.weight_age * age
                     + prio.weight_fairshare * fs.get(j.account, 1.0) + prio.weight_size * size + prio.weight_tier * prio.tiers[j.tier].factor)
    return out


jobs_st = st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1e6), st.floats(60, 7 * 86_400),
                             st.sampled_from(["high", "normal", "spot"]), st.sampled_from(["a", "b", "c"])),
                   min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(jobs_st, st.floats(0, 2e6), st.booleans(),
       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(0, 1e7), max_size=3), st.booleans())
def test_vectorised_equals_scalar(specs, now, small, usage, area):
    prio = MultifactorPriority(weight_walltime=60_000.0, favor_small=small, short_by_area=area,
                               fairshare=ClassicFairshare({"a": 2.0, "b": 1.0}))
    pending = [PendingJob(job(f"j{k}", n, submit=s, wall=w, tier=t, account=a))
               for k, (n, s, w, t, a) in enumerate(specs)]
    view = SchedulerInput(now, pending, [], ClusterState(FAB), usage)
    want = scalar(prio, view)
    assert prio.priorities(view) == want
    assert prio.priorities(view) == want  # second call: from the per-job table
    # a new Job object under an old id (e.g. `scontrol update`) is not served stale terms
    changed = [PendingJob(replace(p.job, tier="high")) for p in pending]
    view2 = SchedulerInput(now, changed, [], ClusterState(FAB), usage)
    assert prio.priorities(view2) == scalar(prio, view2)


def test_unknown_tier_is_a_config_error():
    view = SchedulerInput(0.0, [PendingJob(job("x", 1, tier="gold"))], [], ClusterState(FAB), {})
    with pytest.raises(ConfigError, match="unknown tier 'gold'"):
        MultifactorPriority().priorities(view)


def test_table_grows_and_serves_mixed_old_and_new_jobs():
    """Jobs arrive in batches past the table's initial capacity; each step mixes known and new jobs
    (and drops some): the priorities still equal the scalar formula."""
    prio = MultifactorPriority(weight_walltime=60_000.0, fairshare=ClassicFairshare({"a": 2.0, "b": 1.0}))
    pending: list[PendingJob] = []
    for step in range(12):
        pending = pending[step % 3::2] + pending[:step % 3] if step % 4 == 3 else pending
        pending += [PendingJob(job(f"s{step}-{k}", 1 + k % 4, submit=step * 10.0 + k, wall=600.0 * (1 + k % 7),
                                   tier=("high", "normal", "spot")[k % 3], account="abc"[k % 3]))
                    for k in range(120)]
        view = SchedulerInput(step * 100.0, pending, [], ClusterState(FAB), {"a": 5.0 * step, "c": 1.0})
        assert prio.priorities(view) == scalar(prio, view)
    assert len(pending) > 256  # past the first capacity


def test_step_shares_replace_the_configured_ones_for_that_step():
    """Equal usage: the account with more shares (the step's, e.g. Slurm's ``fairshare=``) ranks first,
    by the formula 2^(-U/S) with S from the step's shares; without them the configured shares count."""
    pending = [PendingJob(job("a1", 1, account="a")), PendingJob(job("b1", 1, account="b"))]
    usage = {"a": 100.0, "b": 100.0}
    prio = MultifactorPriority(fairshare=ClassicFairshare({"a": 3.0}))
    configured = SchedulerInput(0.0, pending, [], ClusterState(FAB), usage)
    stepped = replace(configured, shares={"a": 1, "b": 10})
    assert prio.fairshare.factors(stepped) == pytest.approx({"a": 2 ** (-0.5 / (1 / 11)), "b": 2 ** (-0.5 / (10 / 11))})
    assert prio.priorities(stepped) == pytest.approx(scalar(prio, stepped))
    ranked = prio.priorities(stepped)
    assert ranked["b1"] > ranked["a1"]
    plain = prio.priorities(configured)  # configured shares: a has 3, b the default 1
    assert plain["a1"] > plain["b1"]


@pytest.mark.parametrize("call", [
    lambda: UsageLedger(float("nan")), lambda: UsageLedger(float("inf")), lambda: UsageLedger(0),
    lambda: UsageLedger().advance(float("nan"), {}), lambda: UsageLedger().advance(1.0, {"a": -3}),
    lambda: UsageLedger().charge("a", -5), lambda: UsageLedger().charge("a", float("nan")),
    lambda: UsageLedger.from_dict([]),
])
def test_ledger_refuses_values_that_would_poison_fairshare(call):
    """A NaN once in the ledger stays forever (every account's usage NaN); negative usage is credit."""
    with pytest.raises(ConfigError):
        call()


def test_short_by_area_ranks_gpu_time_not_walltime():
    """Walltime alone ranks a 2-host (16-GPU) 1-hour gang before a 1-host (8-GPU) 90-minute job; by
    area (GPU-minutes requested: 960 against 720) the smaller job comes first. Off by default in
    ``fabric_policy``, which refuses a non-bool."""
    pending = [PendingJob(job("gang", 2, wall=3600.0)), PendingJob(job("one", 1, wall=5400.0))]
    view = SchedulerInput(0.0, pending, [], ClusterState(FAB), {})
    by_wall = MultifactorPriority(weight_walltime=60_000.0).priorities(view)
    by_area = MultifactorPriority(weight_walltime=60_000.0, short_by_area=True).priorities(view)
    assert by_wall["gang"] > by_wall["one"]
    assert by_area["one"] > by_area["gang"]
    assert fabric_policy(short_by_area=True).priority.short_by_area is True
    assert fabric_policy().priority.short_by_area is False
    with pytest.raises(ConfigError, match="short_by_area must be True or False"):
        fabric_policy(short_by_area="yes")
