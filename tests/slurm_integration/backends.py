"""The three Slurm clients of one live cluster (cli, pyslurm, rest), for tests that compare them."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from fabric_hpc.slurm import SlurmClient, open_client
from tests.real import require_real


@contextlib.contextmanager
def every_backend(cluster: Any) -> Iterator[dict[str, SlurmClient]]:
    """``{"cli", "pyslurm", "rest"}`` clients of ``cluster`` (a JWT cluster: slurmrestd is started for
    the rest client and stopped after; pyslurm runs in its own worker process)."""
    from tests.slurm_integration.pyslurm_worker import PyslurmWorker
    from tests.slurm_integration.restd import running_restd, token

    require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None,
                 "pyslurm is not installed (make test installs the vendor wheel; see docs/slurm.md)")
    worker = PyslurmWorker(cluster.env, log=cluster.log_dir / "pyslurm-worker.log")
    try:
        with running_restd(cluster) as restd:
            yield {"cli": open_client("cli", env=cluster.env), "pyslurm": worker,
                   "rest": open_client("rest", url=restd.url, token=token(cluster), env=cluster.env)}
    finally:
        worker.close()
