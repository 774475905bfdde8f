"""The TaskProlog on a live cluster keeps a FABRIC_CKPT_DIR the job sets itself (it was replaced by
<root>/<user>/<job name>) and gives each task of a job array its own directory (all shared one)."""

from __future__ import annotations

import pytest

from tests.slurm_integration.test_jobscripts import prolog_cluster  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _ck(c, jid: int) -> list[str]:
    out = c.job_output(jid, c.wait_job(jid, timeout=60))
    return [line[3:] for line in out.splitlines() if line.startswith("CK=")]


def test_the_jobs_own_checkpoint_directory_is_kept(prolog_cluster):  # noqa: F811
    c = prolog_cluster
    jid = c.sbatch("-N1", "--gres=gpu:1", "--export=ALL,FABRIC_CKPT_DIR=/tmp/x/my ck",
                   wrap="echo CK=$FABRIC_CKPT_DIR; srun bash -c 'echo CK=$FABRIC_CKPT_DIR'")
    assert _ck(c, jid) == ["/tmp/x/my ck"] * 2


def test_each_array_task_gets_its_own_directory(prolog_cluster):  # noqa: F811
    c = prolog_cluster
    jid = c.sbatch("-N1", "--gres=gpu:1", "--array=0-1", "-J", "sweep", "-o", "arr-%A_%a.out",
                   wrap="echo CK=$FABRIC_CKPT_DIR")
    root = c.base_dir / "ckpt" / "root"
    seen = []
    for task in (0, 1):
        info = c.wait_job(f"{jid}_{task}", timeout=60)
        out = c.job_output(f"{jid}_{task}", info)
        seen += [line[3:] for line in out.splitlines() if line.startswith("CK=")]
    assert sorted(seen) == [str(root / "sweep+task0"), str(root / "sweep+task1")], seen
