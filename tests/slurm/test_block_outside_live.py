"""What Slurm's topology/block does with hosts in no block, on live daemons (the note that
``fabric topology export --format topology-block`` writes for them: fabric_hpc.topology.export
.outside_blocks_note). Two NVL72-like racks of 2 hosts (the blocks) and dgx[1-2] in no NVLink domain:
slurmctld starts ("Blocks lack access to 2 nodes"), a job whose GPU type rules out every block host
runs on the DGX hosts, a job that may use both gets block hosts, and one that may use both but names
a DGX host in --nodelist is refused (src/plugins/topology/block: topology_p_eval_nodes,
eval_nodes_block "requires nodes which are not in blocks")."""

from __future__ import annotations

import time

from typing import Any

import pytest

from fabric_hpc.topology import build, generators

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(23, 11)]  # topology/block: 23.11

RACKS = {f"r00{r}-h0{h}" for r in (1, 2) for h in (1, 2)}


def _fabric():
    spec = generators.nvl72(2).model_dump(mode="json", exclude_defaults=True)
    spec["host_types"]["gb200"].update(cores_per_socket=2, memory_gb=8)
    spec["hosts"] = [{"names": f"r00{r}-h[01-02]", "type": "gb200", "rack": f"r00{r}"} for r in (1, 2)]
    spec["nvlink_domains"] = [{**d, "hosts": f"{d['name']}-h[01-02]"} for d in spec["nvlink_domains"]]
    spec["host_types"]["dgx"] = {**generators.DGX_H100.model_dump(mode="json"), "cores_per_socket": 2,
                                 "memory_gb": 8}
    spec["hosts"].append({"names": "dgx[1-2]", "type": "dgx"})
    spec["network"]["groups"][0]["hosts"] = "r001-h[01-02],r002-h[01-02],dgx[1-2]"
    return build({"fabric": 1, **spec})


@pytest.fixture(scope="module")
def cluster(slurm_cluster_factory: Any) -> Any:
    return slurm_cluster_factory(_fabric(), topology_plugin="block")


def _nodes(cluster: Any, job: int) -> set[str]:
    info = cluster.wait_job(job, ["RUNNING", "COMPLETED"], timeout=30)
    return set(cluster.hostnames(info["NodeList"]))


def test_slurm_starts_and_says_the_blocks_lack_the_dgx_hosts(cluster):
    # 25.11: "warning: Blocks lack access ..."; 24.11 (Debian 13): "warning: blocks lack access ..."
    assert "blocks lack access to 2 nodes: dgx[1-2]" in cluster.log_tail("slurmctld", 400).lower()
    conf = (cluster.etc_dir / "topology.conf").read_text()
    assert "# note: dgx[1-2] in no multi-host NVLink domain" in conf


def test_a_job_that_can_use_no_block_host_runs_on_the_dgx_hosts(cluster):
    assert _nodes(cluster, cluster.sbatch("-N2", "--gres=gpu:h100:8", wrap="sleep 1")) == {"dgx1", "dgx2"}


def test_a_job_that_may_use_both_gets_block_hosts(cluster):
    assert _nodes(cluster, cluster.sbatch("-N4", "--gres=gpu:1", wrap="sleep 1")) == RACKS


@pytest.mark.slurm_max(23, 11)
def test_slurm_23_11_takes_a_job_that_may_use_both_on_a_dgx_host_and_runs_it_there(cluster):
    """23.11's _eval_nodes_block (src/plugins/select/cons_tres/job_test.c at slurm-23-11-11-1) answers a
    --nodelist outside the blocks with a plain SLURM_ERROR ("requires nodes which are not in blocks"), not
    a final error: sbatch accepts the job, and backfill starts it on the host it names (seen live on
    23.11.11 once its test clusters backfill every second: fabric_hpc/testing/_slurm_config.py)."""
    job = cluster.sbatch("-N1", "-w", "dgx1", "--gres=gpu:1", wrap="sleep 1")
    try:
        deadline = time.monotonic() + 30
        while (info := cluster.job(job))["JobState"] == "PENDING" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert info["JobState"] in ("RUNNING", "COMPLETING", "COMPLETED") and info["NodeList"] == "dgx1", info
        assert f"JobId={job} requires nodes which are not in blocks" in cluster.log_tail("slurmctld", 400)
    finally:  # not left queued in the shared cluster
        cluster.run(["scancel", str(job)])


@pytest.mark.slurm_min(24, 5)
@pytest.mark.slurm_max(25, 11)
def test_a_job_that_may_use_both_is_refused_on_a_dgx_host(cluster):
    res = cluster.run(["sbatch", "-N1", "-w", "dgx1", "--gres=gpu:1", "--wrap", "sleep 1"], check=False)
    assert res.returncode != 0, res.stdout
    # 24.05 refuses it with its generic error (23.11 takes it: above): 24.05.8's
    # eval_nodes_block.c:285-287 ("requires nodes which are not in blocks") returns SLURM_ERROR, which
    # sbatch shows as "Requested node configuration is not available"; 24.11 returns
    # ESLURM_REQUESTED_TOPO_CONFIG_UNAVAILABLE there
    why = "topology" if cluster.version[:2] >= (24, 11) else "node"
    assert f"Requested {why} configuration is not available" in res.stderr
    assert "requires nodes which are not in blocks" in cluster.log_tail("slurmctld", 50)


@pytest.mark.slurm_min(26, 5)
def test_slurm_26_05_runs_a_job_that_may_use_both_on_the_dgx_host_it_names(cluster):
    """26.05.3's eval_nodes_block answers ESLURM_TOPO_REQ_NODES_NO_MATCH_TOPO, no longer one of
    common_topo_choose_nodes' final errors: the job runs on the host its --nodelist names."""
    assert _nodes(cluster, cluster.sbatch("-N1", "-w", "dgx1", "--gres=gpu:1", wrap="sleep 1")) == {"dgx1"}
