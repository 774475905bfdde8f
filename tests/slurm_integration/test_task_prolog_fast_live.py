"""On a real Slurm (every tier): the root Prolog leaves the TaskProlog's hints file, and a job's
tasks get their exports from the fast path (FABRIC_TASK_PROLOG=fast), equal to what the full path
gives the same job (FABRIC_TASK_PROLOG=full in the job's environment skips the fast path)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.slurm_integration.test_jobscripts import prolog_cluster  # noqa: F401 - the cluster fixture

PROBE = ("srun bash -c 'echo MARK=$FABRIC_TASK_PROLOG CVD=$CUDA_VISIBLE_DEVICES TOPO=$NCCL_TOPO_FILE "
         "CK=$FABRIC_CKPT_DIR BIND=$FABRIC_CPU_BIND NUMA=$FABRIC_NUMA_NODES HOST=$SLURMD_NODENAME'")


def _run(c, *args: str) -> dict[str, str]:
    jid = c.sbatch("-N1", "-w", "n2", "--gres=gpu:3", "-J", "fast probe", *args, wrap=PROBE)
    out = c.job_output(jid, c.wait_job(jid, timeout=60))
    lines = [line for line in out.splitlines() if line.startswith("MARK=")]
    assert len(lines) == 1, out
    return dict(part.split("=", 1) for part in lines[0].split())


def test_tasks_get_their_exports_from_the_fast_path(prolog_cluster):  # noqa: F811
    c = prolog_cluster
    fast = _run(c)
    hints = Path(c.base_dir / "nccl" / "task-hints-n2.json")
    st = hints.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)   # written by the root Prolog
    assert json.loads(hints.read_text())["host"] == "n2"
    full = _run(c, "--export=ALL,FABRIC_TASK_PROLOG=full")
    assert fast.pop("MARK") == "fast" and full.pop("MARK") == "full", (fast, full)
    assert fast == full and fast["CVD"] == "0,1,2" and fast["BIND"] == "map_ldom:0,0,0", fast
    assert fast["TOPO"] == str(c.base_dir / "nccl" / "nccl-topo-n2.xml")
