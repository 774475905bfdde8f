"""A site's non-GPU GRES (``nvme``) in Slurm's answers: ``scontrol -d show job`` prints a count-only GRES
as ``nvme(CNT:1)``; before, the parser raised on the ``CNT`` detail and one such running job stopped every
agent cycle. Only a GPU GRES's details matter to fabric."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.parse import gpu_count, gpu_indices, parse_gres

# what scontrol -d show job (22.05 and 25.11) printed for `sbatch -N1 --gres=gpu:h100:2,nvme:1`
JOB_GRES = "gpu:h100:2(IDX:0-1),nvme(CNT:1)"


def test_count_detail_of_a_non_gpu_gres_is_read():
    items = parse_gres(JOB_GRES)
    assert [(g.name, g.type, g.count) for g in items] == [("gpu", "h100", 2), ("nvme", None, 1)]
    assert gpu_indices(JOB_GRES) == (0, 1) and gpu_count(JOB_GRES) == 2
    assert parse_gres("nvme:2(CNT:2)")[0].count == 2
    assert gpu_indices("nvme(CNT:1),gpu:h100:1(IDX:3)") == (3,)


def test_unknown_details_of_a_non_gpu_gres_are_ignored_but_not_of_a_gpu():
    assert gpu_indices("gpu:1(IDX:0),fpga:1(XYZ:7)") == (0,)
    with pytest.raises(ExternalError, match="unknown GRES detail 'XYZ'"):
        parse_gres("gpu:1(XYZ:7)")


def test_json_gres_detail_with_a_count_only_gres_decodes():
    job = decode.job({"job_id": 678, "job_state": ["RUNNING"], "nodes": "n1", "node_count": 1,
                      "tres_per_node": "gres/gpu:h100:2,gres/nvme:1", "gres_detail": [JOB_GRES]})
    assert job.gpus == {"n1": (0, 1)} and job.gpus_per_node == 2
