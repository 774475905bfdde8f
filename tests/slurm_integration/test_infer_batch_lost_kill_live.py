"""infer_batch.sbatch when srun's --kill-on-bad-exit kill is lost: a rank that exits before MPI_Init
while the other node still runs its Prolog (fabric's loads the fabric model; without PrologFlags=Alloc
a node runs it when the step reaches it) left the other rank in MPI_Init until the time limit: the
kill reached that node before its part of the step existed (Slurm's FIXME in src/api/step_launch.c).
srun --wait=60 signals the step again 60 s after the first rank ended, so the job ends then."""

from __future__ import annotations

import pytest

from tests.slurm_integration.test_infer_batch_rank_death_live import BIN, _ended, _submit, work  # noqa: F401
from tests.real import require_real

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.mpi]


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory):
    require_real("mpi", (BIN / "fabric").exists(), f"{BIN / 'fabric'} is missing (pip install -e .)")
    pytest.importorskip("mpi4py")
    return slurm_cluster_factory(None, nodes=2, settings={"Prolog": "{etc_dir}/slow_prolog.sh"},
                                 config_files={"slow_prolog.sh": "#!/bin/bash\nsleep 3\nexit 0\n"})


def test_a_rank_gone_while_the_other_node_runs_its_prolog_ends_the_job(cluster, work):  # noqa: F811
    wrapper = work["tmp"] / "fabric-wrapper"
    wrapper.write_text(f'#!/bin/bash\nif [[ "$SLURM_PROCID" == 0 && "$2" == run ]]; then exit 7; fi\n'
                       f'exec {BIN / "fabric"} "$@"\n')
    wrapper.chmod(0o755)
    jid = _submit(cluster, work, fabric=wrapper)
    info, out = _ended(cluster, jid, ("FAILED",), 150)  # before: rank 1 sat in MPI_Init until --time=5
    assert info["ExitCode"] in ("137:0", "143:0", "7:0"), out
    assert "Traceback" not in out, out
