"""FABRIC_CKPT_DIR from the TaskProlog: a value the job sets itself (sbatch --export=...,FABRIC_CKPT_DIR=)
was silently replaced by <root>/<user>/<job name>; the tasks of a job array all got one directory and
task 0 refused to start ("give this run its own directory"). A job's own value is kept now, and each
array task gets <job name>+task<N>: '+' never occurs in a kept name, so no other job shares it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm import task_fast
from fabric_hpc.slurm.prolog import prepare_node, task_exports
from tests.slurm.prolog_site import superpod_site

HOST = "su01-h01"


@pytest.fixture()
def site() -> Iterator[dict]:
    with superpod_site("fabric-ckpt-dir-", "hints") as (fab, base, cfg):
        prepare_node(base / "prolog.json", {"SLURMD_NODENAME": HOST})
        yield {"fab": fab, "cfg": cfg, "config": base / "prolog.json"}


def _env(**kw: str) -> dict[str, str]:
    return {"SLURMD_NODENAME": HOST, "CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "7",
            "SLURM_JOB_NAME": "sweep", **kw}


def _both(site: dict, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    full = task_exports(site["fab"], env, topo_dir=Path(site["cfg"]["topo_dir"]),
                        ckpt_root=site["cfg"]["ckpt_root"], notes=[])
    found = task_fast.fast_result(site["config"], env)
    assert found is not None
    return full, found[0]


def test_a_checkpoint_directory_the_job_sets_is_kept(site: dict) -> None:
    for exports in _both(site, _env(FABRIC_CKPT_DIR="/tmp/x/my ck")):
        assert "FABRIC_CKPT_DIR" not in exports and exports["CUDA_VISIBLE_DEVICES"], exports


def test_each_array_task_gets_its_own_directory(site: dict) -> None:
    root = Path(os.path.realpath(site["cfg"]["ckpt_root"])) / task_fast.job_user()
    dirs = set()
    for task in ("0", "1"):
        full, fast = _both(site, _env(SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_JOB_ID="6"))
        assert full["FABRIC_CKPT_DIR"] == fast["FABRIC_CKPT_DIR"] == str(root / f"sweep+task{task}")
        dirs.add(full["FABRIC_CKPT_DIR"])
    assert len(dirs) == 2
    full, _ = _both(site, _env())
    assert full["FABRIC_CKPT_DIR"] == str(root / "sweep")  # a single job: as before
    full, _ = _both(site, _env(SLURM_ARRAY_TASK_ID="1; rm"))  # not a task id: not used
    assert full["FABRIC_CKPT_DIR"] == str(root / "sweep")


def test_a_name_cannot_pose_as_an_array_task(site: dict) -> None:
    full, _ = _both(site, _env(SLURM_JOB_NAME="sweep+task1"))
    assert full["FABRIC_CKPT_DIR"].rsplit("/", 1)[1].startswith("sweep_task1+")


@pytest.mark.parametrize("env", [{"SLURMD_NODENAME": "gpu-new-17"}, {"CUDA_VISIBLE_DEVICES": "0,9"},
                                 {"SLURMD_NODENAME": "cpu-01", "CUDA_VISIBLE_DEVICES": ""}])
def test_a_host_or_gpus_outside_the_model_still_get_the_checkpoint_directory(site: dict, env: dict) -> None:
    """A review: a node added since the model was written, GPUs it does not know, or a CPU node got no
    FABRIC_CKPT_DIR at all, so a requeued gang landing there restarted from nothing. The GPU hints are left
    out (with a note for a task with GPUs); the directory does not depend on the model."""
    notes: list[str] = []
    out = task_exports(site["fab"], _env(**env), topo_dir=Path(site["cfg"]["topo_dir"]),
                       ckpt_root=site["cfg"]["ckpt_root"], notes=notes)
    assert out["FABRIC_CKPT_DIR"].endswith("/sweep") and "CUDA_VISIBLE_DEVICES" not in out, out
    assert bool(notes) == bool(env.get("CUDA_VISIBLE_DEVICES", "0")), notes
