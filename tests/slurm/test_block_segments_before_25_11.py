"""Slurm before 25.11 starts no job that has a node list and several segments: 24.05.8-25.05.8's
src/plugins/topology/block/eval_nodes_block.c refuses it (``"%pJ requires nodes with segment are not
supported"``, ESLURM_REQUESTED_TOPO_CONFIG_UNAVAILABLE); SchedMD's 9df147bc4e ("Add limited support for the
conjunction of --segment and --nodelist") is in 25.11. On 25.05, which reports ``segment_size``, the agent
pinned such a job, the pin never started, and the job reached Slurm only after the stale-pin hand-off
(minutes). Now the layout carries slurmctld's release (``SLURM_VERSION`` of ``scontrol show config``) and
such a job is handed to Slurm at once with the reason; 25.11+ and a release not read keep the pin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from fabric_hpc.slurm.blocks import Blocks, BlockSource, release
from fabric_hpc.slurm.contract import SlurmError
from tests.slurm.test_block_topology_view import NVL3, hosts_of, pending, racks, step

#: 24.11+'s answer on three NVL72 racks, BlockSizes=18,36 (as in test_block_topology_view)
ANSWER = ("BlockName=r001 BlockIndex=0 Nodes=r001-h[01-18] BlockSize=18\n"
          "BlockName=r002 BlockIndex=1 Nodes=r002-h[01-18] BlockSize=18\n"
          "BlockName=r003 BlockIndex=2 Nodes=r003-h[01-18] BlockSize=18\n"
          "AggregatedBlock=r[001-002] BlockIndex=3 Nodes=r001-h[01-18],r002-h[01-18] BlockSize=36\n"
          "AggregatedBlock=r003 BlockIndex=4 Nodes=r003-h[01-18] BlockSize=36\n")


def layout(version: str | None, notes: list | None = None) -> Blocks | None:
    def run(argv: Sequence[str]) -> str:
        if argv[-1] == "topology":
            return ANSWER
        if version is None:
            raise SlurmError("scontrol show config: timed out")
        return f"SLURM_CONF              = /etc/slurm/slurm.conf\nSLURM_VERSION           = {version}\n"

    kept = notes if notes is not None else []
    return BlockSource(NVL3, run, lambda event, **kw: kept.append(kw)).layout()


def test_a_job_of_several_segments_goes_to_slurm_before_25_11() -> None:
    notes: list = []
    blocks = layout("25.05.8", notes)
    assert blocks == Blocks.from_fabric(NVL3) and blocks.slurm_version == (25, 5)
    assert notes[-1]["slurm_version"] == "25.05"
    view, d = step(NVL3, [], [pending(36, segment=18)], blocks)
    assert 2 not in view.candidates and not d.start
    assert "Slurm 25.05 (before 25.11) starts no job with a node list and several segments" in view.invalid[2]
    view, d = step(NVL3, [], [pending(18, segment=18)], blocks)  # one segment: a plain block job, placed
    assert len(racks(hosts_of(d)["2"])) == 1


@pytest.mark.parametrize("version", ["25.11.7", "26.05.3", None])
def test_25_11_and_a_release_not_read_keep_the_segments_pinned(version: str | None) -> None:
    blocks = layout(version)
    view, d = step(NVL3, [], [pending(36, segment=18)], blocks)
    assert len(racks(hosts_of(d)["2"])) == 2  # pinned: one slice of 18 hosts in each of two racks
    assert view.pending[0].job.request.slices == 2


def test_the_release_is_read_from_slurm_version() -> None:
    assert release("25.05.8") == (25, 5) and release("24.11.0-0rc1") == (24, 11)
    assert release("") is None and release("(null)") is None and release("2.6") is None


@pytest.mark.parametrize("flag", ["SPREAD_SEGMENTS", "CONSOLIDATE_SEGMENTS"])
def test_segments_laid_out_by_a_25_11_flag_go_to_slurm(flag: str) -> None:
    """25.11's --spread-segments puts each segment in a base block of its own (eval_nodes_block.c drops
    the blocks of earlier segments from a pinned job's nodes): the agent's pin of two slices may share a
    block, which Slurm would never start. It hands such a job to Slurm at once, with the flag named."""
    blocks = layout("25.11.7")
    job = replace(pending(36, segment=18), segment_flags=(flag,))
    view, d = step(NVL3, [], [job], blocks)
    assert 2 not in view.candidates and not d.start
    assert f"--{flag.lower().replace('_', '-')} lays out the segments its own way" in view.invalid[2]
    view, d = step(NVL3, [], [replace(pending(18, segment=18), segment_flags=(flag,))], blocks)
    assert len(racks(hosts_of(d)["2"])) == 1  # one segment: nothing to lay out, placed
