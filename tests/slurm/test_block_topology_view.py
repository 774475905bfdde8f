"""Under Slurm's topology/block the agent places a job only on host sets the block plugin allocates, on its
own path (Slurm's answer -> build_view -> the fabric policy). Found live on Slurm 25.11.7 with the block
topology.conf of ``fabric topology export --format topology-block`` (BlockSizes=18,36): the agent pinned a
36-node job on r002+r003 (r003 has no partner for a 36-node block) and a 12-node job over two racks (a job of
at most 18 nodes goes into one base block); Slurm refused both pins (BadConstraints) and the jobs were handed
off. The rules (eval_nodes_block.c) are in fabric_hpc/slurm/blocks.py; the live run is
tests/slurm_integration/test_block_topology_live.py."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.slurm import block_level
from fabric_hpc.scheduler import make_policy
from fabric_hpc.scheduler.apply import snapshot
from fabric_hpc.slurm.blocks import Blocks, parse_topology
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.view import PinRules, build_view
from fabric_hpc.topology import build, generators

NOW = 10_000.0
NVL3 = build(generators.nvl72(3))
NVL2 = build(generators.nvl72(2))


def nodes(fab, busy: set[str]) -> list[Node]:
    return [Node(name=h, state="allocated" if h in busy else "idle", cpus=144,
                 cpus_alloc=1 if h in busy else 0, gpus=4, gpus_used=(0, 1, 2, 3) if h in busy else ())
            for h in fab.hosts]


def running(busy: list[str], job_id: int = 1) -> Job:
    return Job(job_id=job_id, name="B", state="RUNNING", comment="nofabric", nodes=len(busy),
               gpus_per_node=4, cpus=len(busy), submit_time=NOW - 60, begin_time=NOW - 60,
               start_time=NOW - 60, time_limit_min=10, node_list=tuple(busy),
               gpus={h: (0, 1, 2, 3) for h in busy})


def pending(n: int, job_id: int = 2, segment: int = 0, comment: str = "fabric") -> Job:
    return Job(job_id=job_id, name="G", state="PENDING", comment=comment, nodes=n, gpus_per_node=4, cpus=n,
               submit_time=NOW - 30, begin_time=NOW + 30, time_limit_min=5, segment_size=segment)


def step(fab, busy: list[str], jobs: list[Job], blocks: Blocks | None, **policy):
    view = build_view(fab, nodes(fab, set(busy)), [running(busy), *jobs] if busy else jobs, now=NOW,
                      pins=PinRules(30, fallback_s=60), blocks=blocks)
    pend, run = {p.job.id: p for p in view.pending}, {r.job.id: r for r in view.running}
    return view, make_policy("fabric", **policy).schedule(snapshot(NOW, pend, run, view.state))


def hosts_of(d) -> dict[str, set[str]]:
    return {j.id: set(p.hosts) for j, p in d.start}


def racks(hosts: set[str]) -> set[str]:
    return {h.split("-")[0] for h in hosts}


@pytest.mark.parametrize("nodes_, segment, level, ll", [(1, 0, 0, 0), (18, 0, 0, 0), (19, 0, 1, 0),
                                                        (36, 0, 1, 0), (37, 0, None, 1), (54, 0, None, 1)])
def test_the_block_level_is_slurms(nodes_, segment, level, ll) -> None:
    assert block_level(nodes_, 18, {0, 1}) == (level, ll)  # BlockSizes=18,36
    assert block_level(36, 18, {0, 2}) == (2, 0)  # BlockSizes=18,72: at most 2 racks of a 72-block


def test_case_a_a_36_node_job_waits_for_the_one_36_node_block_instead_of_r002_and_r003() -> None:
    blocks = Blocks.from_fabric(NVL3)
    view, d = step(NVL3, ["r001-h01"], [pending(36)], blocks)
    assert d.start == []  # r[001-002] has 35 free hosts; r003 alone is no 36-node block
    req = view.pending[0].job.request
    assert req.include == "r001-h[01-18],r002-h[01-18]"
    view, d = step(NVL3, [], [pending(36)], blocks)
    assert racks(hosts_of(d)["2"]) == {"r001", "r002"}
    _, d = step(NVL3, ["r001-h01"], [pending(36)], None)  # without the layout: the pin Slurm refused
    assert racks(hosts_of(d)["2"]) == {"r002", "r003"}


def test_case_b_a_12_node_job_stays_inside_one_rack() -> None:
    busy = [f"r00{r}-h{i:02d}" for r in (1, 2) for i in range(1, 11)]  # 8 free hosts per rack
    _, d = step(NVL2, busy, [pending(12)], None, compact_wait_s=0)
    assert racks(hosts_of(d)["2"]) == {"r001", "r002"}  # what Slurm refused
    view, d = step(NVL2, busy, [pending(12)], Blocks.from_fabric(NVL2), compact_wait_s=0)
    assert view.pending[0].job.request.within == "nvlink"
    assert d.start == []
    _, d = step(NVL2, busy[:5] + busy[10:], [pending(12)], Blocks.from_fabric(NVL2), compact_wait_s=0)
    assert racks(hosts_of(d)["2"]) == {"r001"}  # 13 free in r001, 8 in r002


def test_a_segment_job_gets_one_slice_per_segment_in_base_blocks() -> None:
    blocks = Blocks.from_fabric(NVL3)
    view, d = step(NVL3, ["r001-h01"], [pending(36, segment=18)], blocks)
    req = view.pending[0].job.request
    assert (req.slices, req.slice_level, req.include) == (2, "nvlink", None)
    assert racks(hosts_of(d)["2"]) == {"r002", "r003"}  # accepted with --segment=18 (live)
    view, d = step(NVL3, [], [pending(12, segment=6)], blocks)
    placed = hosts_of(d)["2"]
    assert all(sum(h.startswith(r) for h in placed) % 6 == 0 for r in ("r001", "r002", "r003"))


def test_a_job_no_block_could_ever_hold_is_handed_to_slurm_with_the_reason() -> None:
    blocks = Blocks.from_fabric(NVL3)
    view, _ = step(NVL3, [], [pending(36, comment="fabric:exclude=r001-h01")], blocks)
    assert 2 not in view.candidates and "one block of 36" in view.invalid[2]
    view, _ = step(NVL3, [], [pending(40, segment=20)], blocks)
    assert "larger than a base block (18)" in view.invalid[2]
    view, d = step(NVL3, [], [pending(54)], blocks)  # larger than every level: anywhere
    assert len(hosts_of(d)["2"]) == 54


def test_scontrol_show_topology_is_the_layout() -> None:
    text = ("BlockName=r001 BlockIndex=0 Nodes=r001-h[01-18] BlockSize=18\n"
            "BlockName=r002 BlockIndex=1 Nodes=r002-h[01-18] BlockSize=18\n"
            "BlockName=r003 BlockIndex=2 Nodes=r003-h[01-18] BlockSize=18\n"
            "AggregatedBlock=r[001-002] BlockIndex=3 Nodes=r001-h[01-18],r002-h[01-18] BlockSize=36\n"
            "AggregatedBlock=r003 BlockIndex=4 Nodes=r003-h[01-18] BlockSize=36\n")
    assert parse_topology(NVL3, text) == Blocks.from_fabric(NVL3)
    assert parse_topology(NVL3, "SwitchName=s0 Level=0 LinkSpeed=1 Nodes=r001-h01\n") is None
    with pytest.raises(ConfigError):
        Blocks.from_fabric(NVL3, block_size=19)


def test_slurm_23_11s_show_topology_without_block_sizes_reads_the_exported_block_levels(tmp_path) -> None:
    """23.11 prints base blocks only, no BlockSize and no aggregated blocks (topology_block.c
    _print_topo_record at slurm-23-11-11-1); the levels are those of the ``BlockLevels`` of its
    topology.conf (fabric_hpc.slurm.block_conf), here as ``fabric topology export --slurm-version 23.11``
    writes it: levels [0, 1] keep a 36-node gang off r002+r003 (live on 23.11.11, before: levels [0], the
    gang pinned across r002 and r003)."""
    from fabric_hpc.slurm.blocks import BlockSource
    from fabric_hpc.topology import export

    text = ("BlockName=r001 BlockIndex=0 Nodes=r001-h[01-18]\n"
            "BlockName=r002 BlockIndex=1 Nodes=r002-h[01-18]\n"
            "BlockName=r003 BlockIndex=2 Nodes=r003-h[01-18]\n")
    (tmp_path / "topology.conf").write_text(export.topology_conf(NVL3, "block", slurm_version=(23, 11)))
    answers = {"scontrol show topology": text,
               "scontrol show config": f"SLURM_CONF = {tmp_path}/slurm.conf\nSLURM_VERSION = 23.11.11\n"}
    notes: list = []
    blocks = BlockSource(NVL3, lambda argv: answers[" ".join(argv)],
                         lambda event, **kw: notes.append((event, kw))).layout()
    assert blocks == Blocks.from_fabric(NVL3) and blocks.levels == frozenset({0, 1})
    assert [(e, kw["sizes_from"]) for e, kw in notes] == [("block_topology", str(tmp_path / "topology.conf"))]
    _, d = step(NVL3, ["r001-h01"], [pending(36)], blocks)
    assert d.start == []  # waits for r[001-002]


def test_the_json_answer_gives_the_segment_size() -> None:
    from fabric_hpc.slurm import decode

    assert decode.job({"job_id": 5, "job_state": ["PENDING"], "segment_size": 18}).segment_size == 18
    assert decode.job({"job_id": 5, "job_state": ["PENDING"]}).segment_size == 0  # 22.05: none
