"""train_gang.sbatch: a run that rank 0 would refuse at its start (its checkpoint directory in use by
another job, a RESTORE_STEP the directory does not hold) ends the whole job promptly with exit 3, and
no rank starts. The refusal inside the step did not: srun's --kill-on-bad-exit kill is lost on a node
still launching the step, and rank 1 of a long run trained to its end."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = (REPO / "jobscripts" / "train_gang.sbatch").read_text()


@pytest.fixture(scope="module")
def slow_prolog_cluster(slurm_cluster_factory: Any) -> Any:
    """4 nodes whose Prolog takes 3 s, as fabric's (it loads the fabric model): without PrologFlags=Alloc
    the second node runs it when the step reaches it, and srun's kill of a step that rank 0 has left
    by then is lost there (reproduced on 22.05 and 25.11: rank 1 ran to its end)."""
    return slurm_cluster_factory(nodes=4, settings={"Prolog": "{etc_dir}/slow_prolog.sh"},
                                 config_files={"slow_prolog.sh": "#!/bin/bash\nsleep 3\nexit 0\n"})


def _submit(c: Any, ckpt: Path, steps: int, *args: str, extra: str = "") -> int:
    env = (f"--export=ALL,FABRIC_PYTHON={sys.executable},PYTHONPATH={REPO},FABRIC_CKPT_DIR={ckpt},"
           f"TRAIN_STEPS={steps},STEP_SECONDS=0.05{extra}")
    return c.sbatch(env, *args, script=SCRIPT)


def _refused(c: Any, jid: int) -> str:
    """The job ended FAILED 3:0 within a bounded time, before any rank started; its output."""
    failed = c.wait_job(jid, states=("FAILED",), timeout=60)
    out = c.job_output(jid, failed)
    assert failed["ExitCode"] == "3:0", (failed, out)
    assert "train_demo: rank" not in out and "Traceback" not in out, out
    return out


def test_a_second_job_in_the_directory_ends_before_any_rank_starts(slow_prolog_cluster: Any,
                                                                   tmp_path: Path) -> None:
    c, ck = slow_prolog_cluster, tmp_path / "ck"
    first = _submit(c, ck, 100000, "-J", "holder")
    try:
        deadline = time.monotonic() + 60
        while c.job_output(first).count("train_demo: rank") < 2:
            assert time.monotonic() < deadline, c.job_output(first)
            time.sleep(0.2)
        second = _submit(c, ck, 100000, "-J", "holder")
        out = _refused(c, second)
        assert f"checkpoint directory {ck} is in use by another training run (job {first}" in out, out
    finally:
        c.run(["scancel", str(first)], check=False)


def test_a_restore_step_the_directory_lacks_ends_before_any_rank_starts(slow_prolog_cluster: Any,
                                                                         tmp_path: Path) -> None:
    c = slow_prolog_cluster
    jid = _submit(c, tmp_path / "empty", 100000, "-J", "restore_probe", extra=",RESTORE_STEP=40")
    out = _refused(c, jid)
    assert "--restore-step (RESTORE_STEP) 40: no checkpoint of that step" in out, out
