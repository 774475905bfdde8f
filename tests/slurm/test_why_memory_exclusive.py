"""``fabric slurm why`` of a pinned job that memory or ``--exclusive`` keeps off its hosts (a site with
``SelectTypeParameters=CR_Core_Memory``): before, it said "Slurm starts it as soon as those GPUs are free"
while the GPUs were free, and "down, drained or reserved" (``ReqNodeNotAvail``) for a ``--mem`` job on an
up node."""

from __future__ import annotations

import time
from pathlib import Path

from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.parse import REASONS
from tests.slurm.test_why_probe_fixes import NODES, _why, gang


def _used(mem_alloc: int) -> list[Node]:
    """n1 and n2 up, 1 of 8 GPUs and 1 of 8 CPUs in use, ``mem_alloc`` of 16000 MiB allocated."""
    return [Node(name=n.name, state="mixed", cpus=8, cpus_alloc=1, gpus=8, gpus_used=(0,), mem=16000,
                 mem_alloc=mem_alloc) if n.name in ("n1", "n2") else n for n in NODES]


def test_a_pin_without_the_memory_free_names_memory(tmp_path: Path) -> None:
    job = gang(31, reason="Resources", req_nodes=("n1", "n2"), gpus_per_node=1, mem_per_node=15500,
               begin_time=time.time() - 5)
    text, _ = _why(job, tmp_path, _used(1000))
    assert "as soon as those GPUs are free" not in text, text
    assert "15500 MiB of memory per node" in text and "15000 MiB free on n[1-2]" in text, text
    # Slurm 22.05 answers ReqNodeNotAvail for it: the up nodes lack its memory, they are not down
    job = gang(32, reason="ReqNodeNotAvail,_UnavailableNodes:n[1-2]", req_nodes=("n1", "n2"), gpus_per_node=1,
               mem_per_node=15500, begin_time=time.time() - 5)
    text, _ = _why(job, tmp_path, _used(1000))
    assert "15500 MiB of memory per node" in text and "unavailable to it (down, drained" not in text, text
    assert "memory" in REASONS["ReqNodeNotAvail"]


def test_a_pin_of_an_exclusive_job_on_hosts_in_use_names_exclusive(tmp_path: Path) -> None:
    job = gang(33, reason="Resources", req_nodes=("n1", "n2"), gpus_per_node=1, exclusive=True,
               begin_time=time.time() - 5)
    text, _ = _why(job, tmp_path, _used(0))
    assert "as soon as those GPUs are free" not in text, text
    assert "--exclusive" in text and "other jobs run on n[1-2]" in text, text
    job = gang(34, reason="Resources", req_nodes=("n3", "n4"), gpus_per_node=1, exclusive=True,
               begin_time=time.time() - 5)
    text, _ = _why(job, tmp_path, _used(0))  # its hosts are idle: as before
    assert "Slurm starts it as soon as those GPUs are free" in text, text
