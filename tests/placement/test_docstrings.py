"""Every exported placement object and its public methods say what they do; the scheduler objects
a new-user probe found without one have one now, and the collective entry points annotate ``gpus``."""

from __future__ import annotations

import inspect

import pytest

import fabric_hpc.placement as placement
import fabric_hpc.scheduler as scheduler
from fabric_hpc.placement import collective, collective_steps


def _public(obj) -> list[tuple[str, object]]:
    """``obj`` and, for a class, its own public methods, properties and class methods."""
    out = [(obj.__name__, obj)]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if inspect.isfunction(fn):
                out.append((f"{obj.__name__}.{name}", fn))
    return out


def test_the_placement_api_is_documented():
    exported = [getattr(placement, n) for n in placement.__all__]
    missing = [name for obj in exported if inspect.isclass(obj) or inspect.isfunction(obj)
               for name, member in _public(obj) if not (member.__doc__ or "").strip()]
    assert not missing, missing


@pytest.mark.parametrize("obj", [scheduler.make_policy, scheduler.Scheduler.schedule, scheduler.demo_compare,
                                 placement.ClusterState.load, placement.ClusterState.from_dict,
                                 placement.ClusterState.to_dict, placement.ClusterState.copy,
                                 placement.ClusterState.job_gpus, placement.Problem])
def test_the_objects_the_probe_found_are_documented(obj):
    assert (obj.__doc__ or "").strip()


def test_demo_compare_is_annotated():
    params = inspect.signature(scheduler.demo_compare).parameters.values()
    assert all(p.annotation is not inspect.Parameter.empty for p in params)
    assert inspect.signature(scheduler.demo_compare).return_annotation is not inspect.Signature.empty


@pytest.mark.parametrize("fn", [collective.collective_time, collective.job_load,
                                collective.allreduce_and_load, collective_steps.job_steps,
                                collective_steps.stepped_collective_time])
def test_collective_entry_points_annotate_gpus(fn):
    assert inspect.signature(fn).parameters["gpus"].annotation == "GpuIndices"
