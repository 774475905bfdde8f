"""`fabric slurm why` on an unmarked job that names its hosts itself (``sbatch -w n7``): no agent
pinned it, so no sentence may say so (an admin's probe 7 read "The fabric agent pinned it to n7, but
Slurm does not start it there" for a job without a fabric comment and without an agent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.why import explain

NODES = [Node(name=f"n{i}", state="idle", cpus=8, gpus=8) for i in range(1, 9)]


class _One:
    """A client that knows one job and the nodes."""

    def __init__(self, job: Job, nodes: list[Node] = NODES) -> None:
        self._job, self._nodes = job, nodes

    def job(self, job_id: int) -> Job:
        return self._job

    def nodes(self) -> list[Node]:
        return self._nodes


def _job(reason: str, comment: str = "") -> Job:
    return Job(job_id=7, name="own", state="PENDING", reason=reason, comment=comment, nodes=1,
               gpus_per_node=8, req_nodes=("n7",), submit_time=time.time() - 60)


@pytest.mark.parametrize("reason, words", [
    ("ReqNodeNotAvail", "Slurm does not start it there: some of them are unavailable"),
    ("BadConstraints", "those nodes cannot satisfy the job"),
    ("QOSMaxGRESPerUser", "holds it back under a limit"),
    ("Resources", "Slurm starts it there once they can take it"),
    ("JobHeldUser", "It asks for n7 itself")])
def test_an_unmarked_jobs_own_nodelist_is_not_blamed_on_the_agent(reason: str, words: str,
                                                                  tmp_path: Path) -> None:
    text = explain(_One(_job(reason)), 7, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    assert "agent pinned" not in text and "The fabric agent pinned" not in text, text
    assert "It asks for n7 itself (-w/--nodelist; not a fabric job" in text and words in text, text


def test_a_fabric_job_pinned_to_n7_still_names_the_agent(tmp_path: Path) -> None:
    client = _One(_job("ReqNodeNotAvail", "fabric"))
    text = explain(client, 7, state_dir=tmp_path)["text"]  # type: ignore[arg-type]
    assert "The fabric agent pinned it to n7, but Slurm does not start it there" in text
