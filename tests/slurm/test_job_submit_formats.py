"""plugins/job_submit.lua on what Slurm 25.11 hands it: TRES counts after '=' (tres_per_task is
"gres/gpu=2", "cpu=10,gres/gpu:gtx=1": slurm_opt.c, slurm_option_update_tres_per_task), node counts as
Lua floats (2.0); and refusal hints that say how to leave a job to Slurm (--comment=nofabric)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.slurm.test_job_submit_lua import run_cases

PER_TASK = "--gpus-per-task (GPUs per task or in all) is not read"


def test_gpus_per_task_in_the_formats_of_both_releases_is_named(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [
        {"min_nodes": 2, "tres_per_task": "gres/gpu=2", "comment": "fabric"},         # 25.11
        {"min_nodes": 2, "tres_per_task": "cpu=10,gres/gpu:gtx=1", "comment": "fabric"},
        {"min_nodes": 2, "tres_per_task": "gres:gpu:2", "comment": "fabric"},          # 22.05
        {"min_nodes": 2, "tres_per_task": "cpu=4", "comment": "fabric"},               # no GPUs per task
    ])
    assert [r[0] for r in rows] == ["-1"] * 4
    for said in rows[:3]:
        assert PER_TASK in said[2], said
    assert "add --gres=gpu:N (or --gpus-per-node=N)" in rows[3][2], rows[3]


def test_gpus_per_node_after_an_equals_sign_are_read(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [{"min_nodes": 2, "tres_per_node": "gres/gpu=8"},
                                {"min_nodes": 2, "tres_per_node": "gres/gpu:h100=4,gres/gpu:a100=4"}])
    assert [(r[0], r[1]) for r in rows] == [("0", "fabric"), ("0", "fabric")], rows


def test_a_node_range_is_refused_with_whole_numbers(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [{"min_nodes": 2.0, "max_nodes": 3.0, "tres_per_node": "gres/gpu:8",
                                 "comment": "fabric"},
                                {"min_nodes": 2.0, "tres_per_node": "gres/gpu:8",
                                 "comment": "fabric:slices=3,slice_level=leaf"}])
    assert rows[0][0] == "-1" and "give an exact node count (-N 2, not a range)" in rows[0][2], rows[0]
    assert "2 hosts do not split into 3 equal slices" in rows[1][2], rows[1]
    assert "2.0" not in rows[0][2] + rows[1][2]


def test_refusals_say_how_to_leave_the_job_to_slurm(tmp_path: Path) -> None:
    gang = {"min_nodes": 2, "tres_per_node": "gres:gpu:8"}
    rows = run_cases(tmp_path, [
        {**gang, "array_inx": "0-1", "comment": "fabric"},  # train_gang.sbatch's #SBATCH --comment=fabric
        {**gang, "req_nodes": "n1,n2", "comment": "fabric"},
        {**gang, "max_nodes": 3, "comment": "fabric"},
        {**gang, "array_inx": "0-1", "comment": "nofabric"},
        {**gang, "req_nodes": "n1,n2", "comment": "nofabric"},
    ])
    assert [r[0] for r in rows] == ["-1", "-1", "-1", "0", "0"]
    for said in rows[:3]:
        assert "--comment=nofabric" in said[2], said
    assert "#SBATCH --comment=fabric" in rows[0][2] and "-w" in rows[1][2]


@pytest.mark.parametrize("extra", [{"req_nodes": "n1,n2"}, {"max_nodes": 3}, {"tres_per_node": "gres:gpu:16"},
                                   {"tres_per_node": "gres:gpu:1," * 40 + "gres:gpu:1"}])
def test_a_gang_that_did_not_ask_for_fabric_is_never_refused(tmp_path: Path, extra: dict) -> None:
    """A review: a gang without a comment is marked for fabric only when fabric can place it as given; -w,
    a node range, more GPUs per node than the fabric's hosts or an overlong GPU request made the plugin
    refuse a job that never asked for fabric (also with the agent down). Slurm now gets it untouched."""
    (rc, comment, said), = run_cases(tmp_path, [{"min_nodes": 2, "tres_per_node": "gres:gpu:8", **extra}])
    assert (rc, said) == ("0", "") and comment in ("nil", ""), (rc, comment, said)
