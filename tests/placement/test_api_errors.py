"""The public placement API refuses misuse with a ConfigError that names the argument and the fix
(pydantic's ValidationError, TypeError or AttributeError escaped before: a new-user probe)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, CostWeights, Problem, Request, place
from fabric_hpc.placement.collective import collective_time, job_load
from fabric_hpc.placement.collective_steps import stepped_collective_time
from fabric_hpc.placement.greedy import greedy
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def su():
    return build(generators.superpod(sus=1))


@pytest.mark.parametrize("make, words", [
    (lambda: Request(gpus=-3), "Request: gpus: Input should be greater than or equal to 1 (got -3)"),
    (lambda: Request(), "Request: give exactly one of nodes (with gpus_per_node) or gpus"),
    (lambda: Request(gpus=8, bogus=1), "unknown key 'bogus'"),
    (lambda: CostWeights(span=-1), "CostWeights: span: Input should be greater than or equal to 0 (got -1)"),
    (lambda: CostWeights(message_mb=0), "CostWeights: message_mb: Input should be greater than 0 (got 0)"),
    (lambda: CostWeights(message_mb=2.0**31), "message_mb"),
    (lambda: CostWeights(job_sizes=(1, 2), job_size_probs=(0.5,)), "one probability per job size"),
])
def test_models_built_directly_raise_config_errors_with_a_fix(make, words):
    with pytest.raises(ConfigError) as e:
        make()
    assert not isinstance(e.value, ValidationError) and isinstance(e.value, ValueError)
    assert words in e.value.message and e.value.hint


def test_the_models_still_validate_and_parse_as_before():
    assert Request(gpus=8).units == 8 and CostWeights(span=1).span == 1.0
    assert Request.model_validate_json('{"gpus": 4}').gpus == 4
    # JSON arrays are tuples in pydantic's JSON mode (the scheduler's recorded steps read requests so;
    # a custom __init__ broke that)
    assert Request.model_validate_json('{"gpus": 4, "features": ["a"]}').features == ("a",)
    with pytest.raises(ValidationError):  # pydantic's own entry points keep pydantic's error
        Request.model_validate({"gpus": 0})


@pytest.mark.parametrize("size", [2**64, 10**400, -1, float("nan"), 2**50 + 1],
                         ids=["2**64", "10**400", "-1", "nan", "2**50+1"])
def test_collective_sizes_out_of_range_are_config_errors(su, size):
    with pytest.raises(ConfigError, match="number of bytes in 0..2\\*\\*50"):
        collective_time(su, [0, 1], size)


def test_problem_takes_a_request_string_or_mapping_like_place(su):
    state = ClusterState(su)
    want = place(su, state, "gpus=8", solver="greedy").gpus
    assert greedy(Problem(su, state, "gpus=8", CostWeights())).gpus == want
    assert greedy(Problem(su, state, {"gpus": 8}, {"span": 2.0})).gpus == want
    with pytest.raises(ConfigError, match="request must be a Request"):
        Problem(su, state, 8)


@pytest.mark.parametrize("call, words", [
    (lambda fab: place(fab, None, "gpus=8"), "place(): state must be a ClusterState, not NoneType"),
    (lambda fab: place(None, ClusterState(fab), "gpus=8"), "place(): fab must be a Fabric, not NoneType"),
    (lambda fab: ClusterState(None), "ClusterState(fab): fab must be a Fabric, not NoneType"),
    (lambda fab: Problem(fab, "state.json", "gpus=8"), "Problem(): state must be a ClusterState, not str"),
    (lambda fab: Problem(fab, ClusterState(fab), "gpus=8", 3), "Problem(): weights must be CostWeights"),
])
def test_wrong_argument_types_are_named(su, call, words):
    with pytest.raises(ConfigError) as e:
        call(su)
    assert words in e.value.message and e.value.hint


def test_a_gpu_given_twice_is_refused_everywhere(su):
    """``allocate`` deduplicated silently while a state file with the same list was refused, and a
    collective over [0, 0, 8] was timed as [0, 8]."""
    state = ClusterState(su)
    with pytest.raises(ConfigError, match="lists GPU 'su01-h01/gpu0' twice"):
        state.allocate("j", ["su01-h01/gpu0", "su01-h01/gpu0"])
    with pytest.raises(ConfigError, match="lists GPU 'su01-h01/gpu3' twice"):
        state.allocate("j", [3, 5, 3])
    assert state.free.all() and not state.holds("j")
    for call in (collective_time, job_load, stepped_collective_time):
        with pytest.raises(ConfigError, match=r"GPU index 0 \(su01-h01/gpu0\) is given more than once"):
            call(su, [0, 0, 8], 2**28)
    assert collective_time(su, [0, 8], 2**28).seconds > 0
