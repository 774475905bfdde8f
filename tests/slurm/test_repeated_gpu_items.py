"""The same GPU TRES given twice (``sbatch --gres=gpu:8 --gpus-per-node=8``: Slurm's TresPerNode is
``gres/gpu:8,gres/gpu:8``) is one request, not two: Slurm keeps the *last* count of each GRES name and type
(gres.c ``gres_job_state_validate``: ``_get_next_job_gres`` finds the job's record of that name and type,
and ``gres_per_node = cnt`` overwrites it; slurm_opt.c puts ``--gpus-per-node`` first, ``--gres`` after).
Seen on 22.05.8 and 25.11.7: ``--gres=gpu:2 --gpus-per-node=4`` gets 2 GPUs per node, ``--gres=gpu:4,gpu:2``
gets 2. Different types are different records and add up. Before: the plugin and the agent added the
repeated items (``fabric: 16 GPUs per node requested, but nodes have 8``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import job_from_scontrol
from fabric_hpc.slurm.parse import gpus_requested
from tests.slurm.test_job_submit_lua import gang, run_cases

CASES = [
    ("gres:gpu:8,gres:gpu:8", 8),            # 22.05's spelling of --gres=gpu:8 --gpus-per-node=8
    ("gres/gpu:8,gres/gpu:8", 8),            # 25.11's
    ("gres/gpu:4,gres/gpu:2", 2),            # --gpus-per-node=4 --gres=gpu:2: the last one
    ("gres/gpu:2,gres/gpu:4", 4),
    ("gres/gpu:16,gres/gpu:8", 8),
    ("gres/gpu:a100:2,gres/gpu:h100:2", 4),  # two types: two records
    ("gres/gpu:a100:4,gres/gpu:a100:2", 2),
    ("gres/gpu:8", 8),
    ("", 0),
]


@pytest.mark.parametrize("tres, want", CASES)
def test_the_last_count_of_each_gpu_type_is_the_request(tres: str, want: int) -> None:
    assert gpus_requested(tres) == want


@pytest.mark.parametrize("tres, want", CASES[:6])
def test_the_backends_read_a_repeated_gpu_item_as_slurm_does(tres: str, want: int) -> None:
    line = f"JobId=7 JobName=x JobState=PENDING Reason=None NumNodes=2 TresPerNode={tres} TresPerJob={tres}"
    job = job_from_scontrol(line)
    assert (job.gpus_per_node, job.gpus_per_job) == (want, want)
    rec = decode.job({"job_id": 7, "job_state": ["PENDING"], "tres_per_node": tres, "tres_per_job": tres})
    assert (rec.gpus_per_node, rec.gpus_per_job) == (want, want)


def test_the_plugin_reads_a_repeated_gpu_item_as_slurm_does(tmp_path: Path) -> None:
    rows = run_cases(tmp_path, [gang("fabric", tres_per_node="gres/gpu:8,gres/gpu:8"),
                                gang("", tres_per_node="gres:gpu:8,gres:gpu:8"),
                                gang("fabric", tres_per_node="gres/gpu:16,gres/gpu:8"),
                                gang("fabric", tres_per_node="gres/gpu:8,gres/gpu:16"),
                                gang("fabric", tres_per_node="gres/gpu:a100:8,gres/gpu:h100:8"),
                                gang("fabric", tres_per_node="gres/gpu:a100:4,gres/gpu:h100:4")])
    assert [rc for rc, _, _ in rows] == ["0", "0", "0", "-1", "-1", "0"], rows
    assert rows[1][1] == "fabric", rows  # an unmarked gang of 8 GPUs per node is marked
    assert "16 GPUs per node requested, but nodes have 8" in rows[3][2], rows
    assert "16 GPUs per node requested" in rows[4][2], rows
