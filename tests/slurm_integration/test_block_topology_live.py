"""The agent on a live topology/block cluster (Slurm 23.11+; found on 25.11.7): three NVL72 racks with the
``topology.conf`` of ``fabric topology export --format topology-block`` (``BlockSizes=18,36``: r[001-002] is
the one 36-node block, r003 has no partner). With r001-h01 busy, ``-N36 --gres=gpu:4`` was pinned to
r002+r003, refused by Slurm (``BadConstraints``) and handed off; now the agent reads the layout
(``scontrol show topology``), keeps the job to r[001-002] and pins it there once r001-h01 is free. The
rules, on the agent's own path: tests/slurm/test_block_topology_view.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.hostlist import expand
from fabric_hpc.slurm.plugins import render_job_submit
from fabric_hpc.topology import build, generators, save_spec
from tests.slurm_integration.conftest import FALLBACK_S, AgentProcess, agent_on

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(23, 11)]  # topology/block: 23.11


@pytest.fixture(scope="module")
def nvl3(slurm_cluster_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    fab = build(generators.nvl72(3))
    lua = render_job_submit(state_dir="{base_dir}/agent", fallback_s=FALLBACK_S, max_gpus_per_node=8)
    cluster = slurm_cluster_factory(fab, topology_plugin="block", settings={"JobSubmitPlugins": "lua"},
                                    config_files={"job_submit.lua": lua})
    # 23.11 reads BlockLevels (BlockSizes came with 24.05): tests/topology/test_export_block_2311.py
    levels = "BlockLevels=0-1" if cluster.version[:2] < (24, 5) else "BlockSizes=18,36"
    assert levels in (cluster.etc_dir / "topology.conf").read_text()
    (cluster.base_dir / "agent").mkdir(exist_ok=True)
    cluster.topology_file = tmp_path_factory.mktemp("block") / "topology.yaml"
    save_spec(fab.spec, cluster.topology_file)
    return cluster


@pytest.fixture()
def agent(nvl3: Any) -> Iterator[AgentProcess]:
    with agent_on(nvl3, nvl3.topology_file) as a:
        yield a


def test_a_36_node_gang_waits_for_the_one_36_node_block_and_starts_there(nvl3: Any,
                                                                          agent: AgentProcess) -> None:
    c, a = nvl3, agent
    a.start()
    blocker = c.sbatch("-N1", "-w", "r001-h01", "--gres=gpu:4", "--comment=nofabric", "-o", "/dev/null",
                       wrap="sleep 600")
    c.wait_job(blocker, states=("RUNNING",), timeout=60)
    job = c.sbatch("-N36", "--gres=gpu:4", "--comment=fabric", "-o", "/dev/null", wrap="sleep 5")
    a.wait_cycles(a.cycles() + 6, timeout=60)
    info = c.job(job)
    assert info["JobState"] == "PENDING", a.log()
    log = read_json_lines(a.state_dir / "decisions.jsonl")
    assert [e for e in log if e["event"] == "agent.block_topology" and e["blocks"] == 3
            and e["levels"] == [0, 1] and e["fabric_level"] == "nvlink"], log
    assert not [e for e in log if e["event"] in ("agent.handoff", "agent.place") and e.get("job") == job], log
    assert "r003" not in info.get("ReqNodeList", ""), info  # before: r002-h[01-18],r003-h[01-18]
    c.run(["scancel", str(blocker)])
    done = c.wait_job(job, states=("RUNNING", "COMPLETED"), timeout=90)
    assert {h.split("-")[0] for h in expand(done["NodeList"])} == {"r001", "r002"}, done


def test_a_12_node_gang_stays_in_one_rack_without_the_compact_hold(nvl3: Any) -> None:
    """--compact-wait 0, 8 free hosts in each rack: -N12 (at most 18: one base block) was pinned over two
    racks and refused; now it waits until one rack has 12 free hosts and starts there."""
    c = nvl3
    with agent_on(c, c.topology_file) as a:
        a.extra = ("--compact-wait", "0")
        a.start()
        first = c.sbatch("-N10", "-w", "r001-h[01-10]", "--gres=gpu:4", "--comment=nofabric",
                         "-o", "/dev/null", wrap="sleep 600")
        rest = [c.sbatch("-N10", "-w", f"{r}-h[01-10]", "--gres=gpu:4", "--comment=nofabric",
                         "-o", "/dev/null",
                         wrap="sleep 600") for r in ("r002", "r003")]  # one job over both: no 36-node block
        for b in (first, *rest):
            c.wait_job(b, states=("RUNNING",), timeout=60)
        job = c.sbatch("-N12", "--gres=gpu:4", "--comment=fabric", "-o", "/dev/null", wrap="sleep 5")
        a.wait_cycles(a.cycles() + 6, timeout=60)
        info = c.job(job)
        assert info["JobState"] == "PENDING" and info.get("Reason") != "BadConstraints", (info, a.log())
        log = read_json_lines(a.state_dir / "decisions.jsonl")
        ours = [e for e in log if e["event"] in ("agent.handoff", "agent.place") and e.get("job") == job]
        assert not ours, ours  # before: placed on r001-h[11-16],r002-h[11-16], refused, handed off
        c.run(["scancel", str(first)])
        done = c.wait_job(job, states=("RUNNING", "COMPLETED"), timeout=90)
        assert {h.split("-")[0] for h in expand(done["NodeList"])} == {"r001"}, done


@pytest.mark.slurm_min(24, 5)  # --segment: 24.05 (23.11's sbatch has no such option, src/common/slurm_opt.c)
def test_a_segment_gang_gets_whole_segments_in_base_blocks(nvl3: Any, agent: AgentProcess) -> None:
    """--segment=6 (Slurm's segment_size in the JSON answer): 24 nodes as 4 slices of 6 inside racks, which
    Slurm cuts into its segments; with r001-h01 busy, r001 still takes two of them."""
    c, a = nvl3, agent
    if c.version[:2] < (24, 11):  # see below: its pin goes stale, 3 times, before it is handed to Slurm
        a.extra = ("--pin-timeout", "5")
    a.start()
    blocker = c.sbatch("-N1", "-w", "r001-h01", "--gres=gpu:4", "--comment=nofabric", "-o", "/dev/null",
                       wrap="sleep 600")
    c.wait_job(blocker, states=("RUNNING",), timeout=60)
    job = c.sbatch("-N24", "--segment=6", "--gres=gpu:4", "--comment=fabric", "-o", "/dev/null",
                   wrap="sleep 5")
    done = c.wait_job(job, states=("RUNNING", "COMPLETED"), timeout=90)
    hosts = expand(done["NodeList"])
    assert all(sum(h.startswith(r) for h in hosts) % 6 == 0 for r in ("r001", "r002", "r003")), hosts
    if c.version[:2] == (24, 11):  # no segment size in 24.11's answers: the agent plans it unsegmented
        return
    if c.version[:2] == (25, 5):
        # 25.05 reports segment_size but its topology/block starts no pinned job of several segments
        # (25.05.8's eval_nodes_block.c:268-273, as 24.05): the agent hands it to Slurm at once
        log = read_json_lines(a.state_dir / "decisions.jsonl")
        ours = [e for e in log if e["event"] in ("agent.handoff", "agent.place") and e.get("job") == job]
        assert ours and all(e["event"] == "agent.handoff" for e in ours), ours
        assert "before 25.11" in ours[0]["reason"], ours
        return
    if c.version[:2] < (24, 11):
        # 24.05 shows the segment size nowhere (its job records carry none: slurm_protocol_pack.c packs
        # segment_size only in a job description), so the agent pins the job, and 24.05 never starts a
        # pinned job with segments (24.05.8's eval_nodes_block.c:268-273, "requires nodes with segment
        # are not supported"; 25.11 added that); the stale pins hand it to Slurm, which places it
        assert "requires nodes with segment are not supported" in c.log_tail("slurmctld", 400)
        log = read_json_lines(a.state_dir / "decisions.jsonl")
        assert [e for e in log if e["event"] == "agent.handoff" and e.get("job") == job], log[-5:]
        return
    log = read_json_lines(a.state_dir / "decisions.jsonl")
    placed = [e for e in log if e["event"] == "agent.place" and e.get("job") == job]
    assert placed and sorted(placed[-1]["hosts"]) == sorted(hosts), (placed, hosts)


@pytest.mark.slurm_min(25, 11)  # --spread-segments: 25.11 (SPREAD_SEGMENTS in slurm.h)
def test_a_spread_segment_gang_is_handed_to_slurm_at_once(nvl3: Any, agent: AgentProcess) -> None:
    """--spread-segments: each segment in a base block of its own, which the agent does not model (its
    slices may share a rack): the job goes to Slurm at once, which puts the two segments in two racks."""
    c, a = nvl3, agent
    a.start()
    job = c.sbatch("-N12", "--segment=6", "--spread-segments", "--gres=gpu:4", "--comment=fabric",
                   "-o", "/dev/null", wrap="sleep 5")
    done = c.wait_job(job, states=("RUNNING", "COMPLETED"), timeout=90)
    hosts = expand(done["NodeList"])
    assert sorted(sum(h.startswith(r) for h in hosts) for r in ("r001", "r002", "r003")) == [0, 6, 6], hosts
    log = read_json_lines(a.state_dir / "decisions.jsonl")
    ours = [e for e in log if e["event"] in ("agent.handoff", "agent.place") and e.get("job") == job]
    assert ours and all(e["event"] == "agent.handoff" for e in ours), ours
    assert "--spread-segments lays out the segments its own way" in ours[0]["reason"], ours
