"""SolverPlacer checks its arguments when built, not on its first placement deep inside a replay."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import SOLVERS, SolveOptions
from fabric_hpc.scheduler import SolverPlacer


def test_an_unknown_solver_is_refused_at_construction():
    with pytest.raises(ConfigError) as e:
        SolverPlacer("bogus")
    assert "unknown solver 'bogus'" in e.value.message and all(s in e.value.hint for s in SOLVERS)


def test_options_must_be_solve_options():
    with pytest.raises(ConfigError, match="options must be SolveOptions, not dict"):
        SolverPlacer("greedy", {"time_limit_s": 1.0})  # type: ignore[arg-type]
    assert [SolverPlacer(s, SolveOptions()).name for s in SOLVERS] == list(SOLVERS)


def test_a_trace_job_that_is_no_gang_is_named_in_the_traces_words():
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.sim.traces import gang_request

    with pytest.raises(ConfigError, match="a job of 0 GPUs on hosts of 8 GPUs is not a valid gang"):
        gang_request(0, 8)
