"""The ``pyslurm`` backend: a thin layer over pyslurm's object API (pyslurm >= 23.x; PyPI targets 25.11).

``import pyslurm`` without ``SLURM_CONF`` set terminates the process (libslurm calls exit), so the
import is guarded: :func:`load_pyslurm` refuses unless ``SLURM_CONF`` names an existing file, and
only then imports. No pyslurm build exists for Slurm 22.05; the contract tests skip this backend
where it is not importable (allowed by the project's rules).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm.contract import Job, Node, SlurmClient, SlurmError
from fabric_hpc.slurm.parse import gpu_count, gpu_indices, hosts, parse_state


def load_pyslurm() -> Any:
    """Import pyslurm safely (see module docstring); SlurmError when it cannot be used here."""
    conf = os.environ.get("SLURM_CONF")
    if not conf or not os.path.isfile(conf):
        raise SlurmError("pyslurm needs SLURM_CONF set to an existing slurm.conf before it is imported "
                         "(without it libslurm ends the process)", hint="export SLURM_CONF=/etc/slurm/slurm.conf")
    try:
        import pyslurm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SlurmError(f"pyslurm is not importable: {exc}",
                         hint="pip install pyslurm matching your Slurm version, or use --backend cli") from None
    return pyslurm


class PyslurmClient(SlurmClient):
    backend = "pyslurm"

    def __init__(self) -> None:
        self.ps = load_pyslurm()

    def nodes(self) -> list[Node]:
        out = []
        for name, n in self.ps.Nodes.load().items():
            d = n.to_dict()
            out.append(Node(name=name, state=str(d.get("state", "unknown")).lower(), cpus=int(d.get("cpus") or 0),
                            gpus=gpu_count(",".join(f"{k}:{v}" for k, v in (d.get("configured_gres") or {}).items())),
                            gpus_used=()))
        return out

    def jobs(self) -> list[Job]:
        return [self._job(j.to_dict()) for j in self.ps.Jobs.load().values()]

    def _job(self, d: dict[str, Any]) -> Job:
        state, flags = parse_state(d.get("state"))
        return Job(job_id=int(d["id"]), name=str(d.get("name") or ""), state=state, flags=flags,
                   reason=str(d.get("state_reason") or "None"), comment=str(d.get("comment") or ""),
                   nodes=int(d.get("num_nodes") or 1), node_list=hosts(d.get("nodes")),
                   req_nodes=hosts(d.get("required_nodes")),
                   gpus_per_node=gpu_count(str(d.get("gres_per_node") or "")),
                   gpus={n: gpu_indices(g) for n, g in (d.get("gres_detail") or {}).items()})

    def job(self, job_id: int) -> Job:
        try:
            return self._job(self.ps.Job.load(int(job_id)).to_dict())
        except self.ps.RPCError as exc:
            raise NotFoundError(f"Slurm knows no job {job_id}: {exc}") from None

    def submit(self, script: str, args: Sequence[str] = (), *, cwd: str | None = None) -> int:
        from fabric_hpc.slurm.rest_backend import sbatch_args_to_job

        props = sbatch_args_to_job(args)
        desc = self.ps.JobSubmitDescription(script=script, working_directory=cwd or os.getcwd(), **{
            {"tres_per_node": "gres_per_node", "nodes": "nodes"}.get(k, k): v for k, v in props.items()})
        return int(desc.submit())

    def update(self, job_id: int, **fields: str) -> None:
        keys = {"ReqNodeList": "required_nodes", "StartTime": "begin_time", "Comment": "comment"}
        self.ps.Job(int(job_id)).modify(self.ps.JobSubmitDescription(**{keys[k]: v for k, v in fields.items()}))

    def hold(self, job_id: int) -> None:
        self.ps.Job(int(job_id)).hold()

    def release(self, job_id: int) -> None:
        self.ps.Job(int(job_id)).release()

    def requeue(self, job_id: int) -> None:
        self.ps.Job(int(job_id)).requeue()

    def cancel(self, job_id: int) -> None:
        self.ps.Job(int(job_id)).cancel()
