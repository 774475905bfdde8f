"""The pyslurm backend reads a job's ``--gpus=N`` (Slurm's TresPerJob) from ``squeue``: pyslurm 25.11.2 has no
reading of it (``Job.tres_per_job`` parses ``gres/gpu:16`` as key=value pairs: None), so a pending
``-N2 --gpus=16`` job had no GPUs on that backend alone. Live: ``test_client_contract.py``'s
``test_the_gpu_request_of_each_form`` (cli, rest, pyslurm)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.pyslurm_backend import job_from_pyslurm, tres_per_job

# squeue 25.11's answer to -h -O 'JobId:0|,tres-per-job:0|' (three held jobs of the contract cluster)
ANSWER = "710|N/A|\n709|gres/gpu:h100:4|\n708|gres/gpu:16|\n"


def _job(**more: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        id=708, state="PENDING", allocated_nodes=None, gres_per_node={}, eligible_time=None, start_time=None,
        time_limit=None, name="g", state_reason="JobHeldUser", comment="nofabric", user_name="u",
        partition="debug", account="a", qos="normal", num_nodes=2, required_nodes=None, excluded_nodes=None,
        submit_time=1, priority=0, dependencies=None, cpus=2, reservation=None, array_id=None,
        heterogeneous_id=None)
    return SimpleNamespace(**{**fields, **more})


def test_squeues_tres_per_job_is_read_by_job_id() -> None:
    assert tres_per_job(ANSWER) == {709: "gres/gpu:h100:4", 708: "gres/gpu:16"}
    assert tres_per_job("") == {}


def test_the_pyslurm_job_has_the_gpus_it_asks_for_in_all() -> None:
    per_job = tres_per_job(ANSWER)
    job = job_from_pyslurm(_job(), per_job)
    assert (job.gpus_per_job, job.gpus_per_node, job.nodes) == (16, 0, 2)
    assert job_from_pyslurm(_job(id=709), per_job).gpus_per_job == 4
    assert job_from_pyslurm(_job(id=710), per_job).gpus_per_job == 0  # N/A: none
    # --gpus=4 then --gpus=2 (one record per GPU type, the last count, as the cli backend reads it)
    assert job_from_pyslurm(_job(), {708: "gres/gpu:4,gres/gpu:2"}).gpus_per_job == 2
    assert job_from_pyslurm(_job()).gpus_per_job == 0  # not read (the backend's jobs())


@pytest.mark.parametrize("line", ["708||", "708|gres/gpu:16", "JOBID|TRES_PER_JOB|", "708 gres/gpu:16",
                                  "708|a|b|"])
def test_an_answer_it_cannot_read_is_one_error_naming_it(line: str) -> None:
    """``708||``: squeue exits 0 and prints every value empty for a field name it does not know."""
    with pytest.raises(SlurmError, match="squeue answered a TresPerJob line fabric cannot read") as err:
        tres_per_job(f"709|N/A|\n{line}\n")
    assert "\n" not in err.value.message and "squeue -h -O" in (err.value.hint or "")


def test_a_malformed_value_names_the_job_and_the_field() -> None:
    with pytest.raises(SlurmError, match=r"pyslurm job 708: field 'tres_per_job' \(squeue TresPerJob\)"):
        job_from_pyslurm(_job(), {708: "gres/gpu:16(IDX:x)"})
