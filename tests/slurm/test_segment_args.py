"""The segment checks every backend shares (no Slurm needed): the live runs are in test_segment_live.py."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.segment import SEGMENT_RULE, TOPO_REFUSAL, check_segment, refusal_hint, refuse_update
from fabric_hpc.slurm.rest_answers import _messages


@pytest.mark.parametrize("args", [["-N", "8", "--segment=4"], ["-N8", "--segment", "4"],
                                  ["--nodes=8", "--segment=4"], ["--nodes", "8", "--segment", "4", "-H"]])
def test_every_spelling_of_nodes_and_segment_is_read(args: list[str]) -> None:
    assert check_segment(args) == 4


@pytest.mark.parametrize("args", [["-N", "8", "--segment=3"], ["-N9", "--segment", "4"],
                                  ["--nodes=2", "--segment=16"]])
def test_a_fixed_node_count_must_be_a_multiple_of_the_segment(args: list[str]) -> None:
    with pytest.raises(ConfigError, match="multiple of the segment size"):
        check_segment(args)


def test_what_is_left_to_slurm() -> None:
    assert check_segment(["-N", "8"]) is None
    assert check_segment(["-N", "6-8", "--segment=4"]) == 4  # a range: Slurm decides (and says why)
    assert check_segment(["--segment=4"]) == 4
    with pytest.raises(ConfigError, match="whole number of hosts"):
        check_segment(["-N", "8", "--segment=0"])


def test_the_hint_is_for_a_topology_refusal_of_a_segment_only() -> None:
    message = f"sbatch: error: Batch job submission failed: {TOPO_REFUSAL}"
    assert refusal_hint(message, ["-N", "6-8", "--segment=4"]) == SEGMENT_RULE
    assert refusal_hint(message, ["-N", "6", "--switches=1"]) is None
    assert refusal_hint("Invalid account", ["--segment=4"]) is None
    # Slurm 26.05's sbatch refuses it itself, before slurmctld (as it printed for -N 6-8 --segment=4)
    sbatch = ("`sbatch --parsable -N 6-8 --segment=4` exited 1: sbatch: fatal: --segment=4 does not fit the "
              "job size (6): node count must be evenly divisible by segment size")
    assert refusal_hint(sbatch, ["-N", "6-8", "--segment=4"]) == SEGMENT_RULE


def test_an_update_of_the_segment_size_is_refused_in_any_spelling() -> None:
    for key in ("SegmentSize", "segmentsize", "segment_size", "Segment"):
        with pytest.raises(ConfigError, match="only when the job is submitted"):
            refuse_update(7, {key: "2"})
    refuse_update(7, {"TimeLimit": "10", "Comment": "segment"})


def test_slurmrestd_errors_name_slurms_reason() -> None:
    """v0.0.42+ error entries: description (what failed) and error (why); both are shown."""
    entry = {"description": "Batch job submission failed", "error": TOPO_REFUSAL,
             "source": "slurm_submit_batch_job()"}
    assert _messages([entry]) == f"Batch job submission failed: {TOPO_REFUSAL}"
    assert _messages([{"error": "Invalid job id specified", "error_code": 2017}]) == \
        "Invalid job id specified"
    assert _messages([{"description": "Unable to query", "error": "Unable to query"}]) == "Unable to query"
