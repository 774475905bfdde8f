"""Defects a vLLM offline-batch user met (changed items, foreign output folders, options, order,
dead letters, compressed input, vLLM field names), each pinned by a test."""

from __future__ import annotations

import math

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.pipeline import MAX_OVERCOMMIT, PipelineOptions


@pytest.mark.parametrize("field,value", [
    ("max_drain_batches", 0), ("admit_queue", 0), ("done_queue", 0), ("admit_batch", 0),
    ("admit_batch", -1), ("chunk_size", 0), ("chunk_size", -5), ("chunk_size", True),
    ("flush_interval_s", math.nan), ("flush_interval_s", -1), ("overcommit", math.nan),
    ("overcommit", math.inf), ("overcommit", "2"), ("overcommit", 1e30), ("overcommit", 0.5),
    ("low_fraction", 1.0), ("switch_interval_s", 0.0),
])
def test_pipeline_options_are_checked_at_construction(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"PipelineOptions.{field} is") as err:
        PipelineOptions(**{field: value})
    assert "leave it out for the default" in err.value.hint


def test_pipeline_options_accept_their_whole_range() -> None:
    opts = PipelineOptions(overcommit=MAX_OVERCOMMIT, admit_batch=1, flush_interval_s=0, switch_interval_s=None)
    assert opts.overcommit == 16.0
    assert PipelineOptions(overcommit=1).overcommit == 1
