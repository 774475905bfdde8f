"""jobscripts/*.sbatch submitted on a live cluster the way an ML engineer does, on what a prober found:

- FABRIC_PYTHON (train_gang's default: python3) naming a python that does not import fabric_hpc (the
  system's, a venv without fabric-hpc): every script failed with exit 1 and Python's own line (or a
  traceback), naming neither the variable nor the fix; infer_batch.sbatch blamed "bad input" after
  srun. Now each exits 127 before anything runs, as for a python that is not there, naming FABRIC_PYTHON.
- infer_batch.sbatch with `--signal=B:USR1@60` (train_gang's way to stop before the time limit): the
  batch shell died of the signal (FAILED 0:10, no line saying what to do). Now the ranks are stopped
  in order and the job says to resubmit with the same OUTPUT, which resumes.
- mpi4py that cannot load an MPI library (MPI4PY_LIBMPI wrong, no `module load mpich`): every rank
  printed a traceback (mpi4py raises RuntimeError, not ImportError). Now one error line naming it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.inference import CostModel, EngineLimits, write_simulated_artefact
from tests.real import require_real

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = {name: (REPO / "jobscripts" / f"{name}.sbatch").read_text()
           for name in ("train_gang", "infer_batch", "ckpt_restore")}


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory: Any) -> Any:
    return slurm_cluster_factory(None, nodes=2)


def _python_without_fabric(tmp_path: Path) -> Path:
    """A real python that cannot import fabric_hpc (no site-packages), as the system's python3."""
    py = tmp_path / "bin" / "python3"
    py.parent.mkdir()
    py.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    py.chmod(0o755)
    return py


def _engine(tmp_path: Path, n_items: int, base_s: float) -> dict[str, Any]:
    limits = EngineLimits(max_batch_size=8, max_num_tokens=512, max_input_len=64, max_seq_len=96,
                          kv_capacity_tokens=1024)
    cost = CostModel(base_s=base_s, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg = write_simulated_artefact(tmp_path / "engine", limits=limits, cost=cost)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    spool = tmp_path / "spool"
    spool.mkdir()
    items = [{"id": f"i{k}", "prompt": [k % 97 + 1] * (1 + k % 20), "max_new_tokens": 4}
             for k in range(n_items)]
    (spool / "a.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return {"ENGINE_CONFIG": tmp_path / "engine.json", "INPUT": spool, "OUTPUT": tmp_path / "out",
            "ids": sorted(i["id"] for i in items)}


def _infer_env(c: Any, work: dict[str, Any], *extra: str) -> str:
    return ",".join(["--export=ALL", f"FABRIC={BIN / 'fabric'}", f"PATH={BIN}:{c.env['PATH']}",
                     f"PYTHONPATH={REPO}", *(f"{k}={work[k]}" for k in ("ENGINE_CONFIG", "INPUT", "OUTPUT")),
                     *extra])


def test_a_python_without_fabric_hpc_exits_127_naming_fabric_python(cluster: Any, tmp_path: Path) -> None:
    c, py = cluster, _python_without_fabric(tmp_path)
    work = _engine(tmp_path, 4, 1e-4)
    envs = {"train_gang": f"--export=ALL,FABRIC_PYTHON={py},FABRIC_CKPT_DIR={tmp_path / 'ck'},TRAIN_STEPS=4",
            "ckpt_restore": f"--export=ALL,FABRIC_PYTHON={py},CKPT={tmp_path / 'ck'}",
            "infer_batch": ",".join(["--export=ALL", f"FABRIC_PYTHON={py}", f"PATH={BIN}:{c.env['PATH']}",
                                     *(f"{k}={work[k]}" for k in ("ENGINE_CONFIG", "INPUT", "OUTPUT"))])}
    for name, env in envs.items():
        jid = c.sbatch(env, "-J", f"nofab_{name}", "-N", "1", script=SCRIPTS[name])
        info = c.wait_job(jid, states=("FAILED",), timeout=60)
        out = c.job_output(jid, info)
        assert info["ExitCode"] == "127:0", (name, info, out)
        assert f"{name}: '{py}' does not import fabric_hpc" in out and "set FABRIC_PYTHON" in out, (name, out)
        assert "Traceback" not in out and "srun" not in out and "train_demo" not in out, (name, out)
    assert not (tmp_path / "ck").exists() and not work["OUTPUT"].exists()


def test_infer_batch_stops_in_order_on_a_batch_usr1_and_the_resubmit_resumes(cluster: Any,
                                                                             tmp_path: Path) -> None:
    require_real("mpi", (BIN / "fabric").exists(), f"{BIN / 'fabric'} is missing (pip install -e .)")
    pytest.importorskip("mpi4py")
    c, work = cluster, _engine(tmp_path, 600, 0.02)
    jid = c.sbatch(_infer_env(c, work), "--signal=B:USR1@60", "--time=5", script=SCRIPTS["infer_batch"])
    journal = work["OUTPUT"] / "journal" / "rank-00001.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.is_file() and journal.stat().st_size):  # the ranks have committed work
        state = c.job(jid)["JobState"]
        assert time.monotonic() < deadline and state in ("PENDING", "RUNNING"), c.job_output(jid)
        time.sleep(0.1)
    c.run(["scancel", "--batch", "--signal=USR1", str(jid)])  # what --signal=B:USR1@60 delivers
    info = c.wait_job(jid, states=("FAILED",), timeout=60)
    out = c.job_output(jid, info)
    assert info["ExitCode"] == "143:0", (info, out)  # before: 0:10, the batch shell killed by SIGUSR1
    assert "infer_batch: SIGUSR1" in out and "resubmit with the same OUTPUT to resume" in out, out
    assert "Traceback" not in out and not (work["OUTPUT"] / "results.jsonl").exists(), out
    again = c.sbatch(_infer_env(c, work), script=SCRIPTS["infer_batch"])
    out = c.job_output(again, c.wait_job(again, timeout=120))
    got = [json.loads(line)["id"] for line in (work["OUTPUT"] / "results.jsonl").read_text().splitlines()]
    assert sorted(got) == work["ids"] and "skipped as already done" in out, out


def test_an_mpi_library_that_does_not_load_is_one_line_not_a_traceback(cluster: Any, tmp_path: Path) -> None:
    require_real("mpi", (BIN / "fabric").exists(), f"{BIN / 'fabric'} is missing (pip install -e .)")
    pytest.importorskip("mpi4py")
    c, work = cluster, _engine(tmp_path, 4, 1e-4)
    env = _infer_env(c, work, f"MPI4PY_LIBMPI={tmp_path / 'no-libmpi.so'}")
    jid = c.sbatch(env, script=SCRIPTS["infer_batch"])
    info = c.wait_job(jid, states=("FAILED",), timeout=60)
    out = c.job_output(jid, info)
    assert "Traceback" not in out and "RuntimeError" not in out, out
    assert "cannot load the MPI library" in out and "MPI4PY_LIBMPI" in out, out
    # found by the preflight, before srun: a rank failing at its start lost its line when srun
    # stopped the others (CI, 22.05: "exit code 5" and "143" from srun, and no word why)
    assert info["ExitCode"] == "5:0" and "not started" in out and "ranks on" not in out, (info, out)
