"""``--segment`` through every backend (cli, rest, pyslurm) on a live topology/block cluster.

What Slurm 25.11.7 does with a segment size (its source: ``slurm-25.11.7.tar.xz`` in SLURM_VENDOR):

* sbatch: ``--segment=N`` (``src/common/slurm_opt.c:3286``); slurmrestd: the job description's
  ``segment_size``, a uint16 (``src/plugins/data_parser/v0.0.44/parsers.c:9522``, also in v0.0.42 and
  v0.0.43); pyslurm: ``JobSubmitDescription(segment_size=int)`` (``submission.pyx``: ``u16(segment_size)``).
  slurmctld copies it into the job at submission (``src/slurmctld/job_mgr.c:8904``); ``scontrol show
  job`` prints ``SegmentSize=N`` (``src/scontrol/info_job.c:798``), ``squeue --json`` and slurmrestd's
  v0.0.43+ job answers carry ``segment_size`` (``parsers.c:8797``).
* Submission only: ``scontrol update`` knows no SegmentSize (``Update of this parameter is not
  supported``); slurmrestd's and pyslurm's job update accept ``segment_size`` and slurmctld ignores it
  without a word (``_update_job`` never reads it). Every backend refuses such an update itself.
* topology/block refuses a segment that does not divide the node count
  (``src/plugins/topology/block/eval_nodes_block.c:315``, ``Requested topology configuration is not
  available``) at submission, but not for a held job: that one is accepted and stays pending with
  ``Reason=BadConstraints``. So the backends check a fixed ``-N`` against the segment first.

The fabric: 16 hosts, 4 per leaf, so 4 blocks of 4 hosts and ``BlockSizes=4,8,16``; two exclusive
jobs on n1 and n13 leave leaf2 and leaf3 the only whole blocks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import SlurmClient, SlurmError, open_client
from fabric_hpc.slurm.segment import SEGMENT_RULE
from fabric_hpc.slurm.rest_backend import _vtuple
from fabric_hpc.topology import build, generators
from tests.real import require_real

pytestmark = [pytest.mark.slurm, pytest.mark.slurm_min(24, 11)]  # --segment: 24.05; slurmrestd v0.0.42: 24.11

BLOCKS = {"leaf1": {f"n{i}" for i in range(1, 5)}, "leaf2": {f"n{i}" for i in range(5, 9)},
          "leaf3": {f"n{i}" for i in range(9, 13)}, "leaf4": {f"n{i}" for i in range(13, 17)}}
SCRIPT = "#!/bin/sh\nsleep 60\n"
BACKENDS = ("cli", "rest", "pyslurm")


@pytest.fixture(scope="module")
def block_cluster(slurm_cluster_factory: Any) -> Iterator[Any]:
    """A topology/block cluster with JWT (for slurmrestd), two blockers leaving leaf2 and leaf3 whole."""
    from tests.slurm_integration.restd import jwt_cluster

    fabric = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=1, cpus=2))
    with jwt_cluster(slurm_cluster_factory, fabric, "fabric-segment-", topology_plugin="block") as cluster:
        assert "BlockSizes=4,8,16" in (cluster.etc_dir / "topology.conf").read_text()
        for node in ("n1", "n13"):
            cluster.wait_job(cluster.sbatch("-N1", "-w", node, "--exclusive", wrap="sleep 600"), ["RUNNING"],
                             timeout=30)
        yield cluster


@pytest.fixture(scope="module")
def restd(block_cluster: Any) -> Iterator[Any]:
    from tests.slurm_integration.restd import running_restd

    with running_restd(block_cluster) as server:
        yield server


@pytest.fixture(scope="module")
def pyslurm_client(block_cluster: Any) -> Iterator[SlurmClient]:
    from tests.slurm_integration.pyslurm_worker import PyslurmWorker

    if block_cluster.version[:2] != (25, 11):  # no such tier by default: 25.11 is the only one >= 24.11
        pytest.skip(f"pyslurm 25.11 runs on Slurm 25.11 only, this tier is {block_cluster.version}")
    require_real("pyslurm", importlib.util.find_spec("pyslurm") is not None,
                 "pyslurm is not installed (make test installs the vendor wheel; see docs/slurm.md)")
    worker = PyslurmWorker(block_cluster.env, log=block_cluster.log_dir / "pyslurm-worker.log")
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, block_cluster: Any) -> Iterator[SlurmClient]:
    if request.param == "cli":
        c: SlurmClient = open_client("cli", env=block_cluster.env)
    elif request.param == "rest":
        from tests.slurm_integration.restd import token

        c = open_client("rest", url=request.getfixturevalue("restd").url, token=token(block_cluster),
                        env=block_cluster.env)
    else:
        c = request.getfixturevalue("pyslurm_client")
    before = _job_ids(block_cluster)
    yield c
    _cancel(block_cluster, _job_ids(block_cluster) - before)  # this test's jobs; the blockers stay


def _job_ids(cluster: Any) -> set[int]:
    return {int(j) for j in cluster.run(["squeue", "-h", "-o", "%i"]).stdout.split()}


def _cancel(cluster: Any, jobs: set[int], timeout: float = 30) -> None:
    if not jobs:
        return
    cluster.run(["scancel", *map(str, sorted(jobs))], check=False)
    deadline = time.monotonic() + timeout
    while _job_ids(cluster) & jobs or "COMPLETING" in cluster.run(["squeue", "-h", "-t", "CG"]).stdout:
        assert time.monotonic() < deadline, f"jobs {sorted(jobs)} did not end"
        time.sleep(0.1)


def _show(cluster: Any, job_id: int) -> dict[str, str]:
    line = cluster.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def _assert_segment_shown(cluster: Any, job_id: int, size: str) -> None:
    """``scontrol show job``'s SegmentSize is ``size``; Slurm 24.11 (Debian 13) keeps a job's segment size
    (its placement below honours it) but shows it nowhere: not in scontrol, squeue --json or slurmrestd's
    v0.0.42 answers (checked on 24.11.5), so there the field is absent (25.05 not run; 25.11 shows it)."""
    shown = _show(cluster, job_id).get("SegmentSize")
    assert shown == (size if cluster.version >= (25, 5) else None), (cluster.version, shown)


def _squeue_json(cluster: Any, job_id: int) -> dict[str, Any]:
    (job,) = json.loads(cluster.run(["squeue", "--json", "-j", str(job_id)]).stdout)["jobs"]
    return job


def _blocks_of(hosts: set[str]) -> list[str]:
    return sorted(name for name, members in BLOCKS.items() if hosts & members)


def test_a_submitted_segment_size_is_kept_and_placed_by(client: SlurmClient, block_cluster: Any) -> None:
    """-N 8 --segment=4: Slurm keeps SegmentSize=4 and runs the job as two whole blocks (leaf2 + leaf3)."""
    jid = client.submit(SCRIPT, ["-N", "8", "--segment=4", "-H"], cwd=str(block_cluster.work_dir))
    _assert_segment_shown(block_cluster, jid, "4")
    if block_cluster.version >= (25, 5):  # squeue --json's segment_size: data_parser v0.0.43+
        assert _squeue_json(block_cluster, jid)["segment_size"] == 4
    if client.backend == "rest" and _vtuple(client.version) >= (0, 0, 43):  # type: ignore[attr-defined]
        (job,) = client._call("GET", f"/job/{jid}")["jobs"]  # type: ignore[attr-defined]
        assert job["segment_size"] == 4
    client.release(jid)
    hosts = set(block_cluster.hostnames(block_cluster.wait_job(jid, ["RUNNING"], timeout=30)["NodeList"]))
    assert len(hosts) == 8 and _blocks_of(hosts) == ["leaf2", "leaf3"], hosts


@pytest.mark.slurm_max(25, 11)
def test_slurm_strands_a_held_job_whose_segment_does_not_divide_it(block_cluster: Any) -> None:
    """Why the backends check: sbatch -H -N 8 --segment=3 is accepted, then never runs (BadConstraints)."""
    jid = block_cluster.sbatch("-N8", "--segment=3", "-H", wrap="true")
    try:
        block_cluster.run(["scontrol", "release", str(jid)])
        deadline = time.monotonic() + 20
        while (shown := _show(block_cluster, jid))["Reason"] != "BadConstraints":
            assert shown["JobState"] == "PENDING" and time.monotonic() < deadline, shown
            time.sleep(0.2)
    finally:
        _cancel(block_cluster, {jid})


@pytest.mark.slurm_min(26, 5)
def test_sbatch_26_05_refuses_a_segment_that_does_not_divide_the_node_count(block_cluster: Any) -> None:
    """26.05's sbatch checks it itself (src/common/slurm_opt.c, _validate_segment_size): nothing is queued."""
    before = _job_ids(block_cluster)
    proc = block_cluster.run(["sbatch", "-N8", "--segment=3", "-H", "--wrap", "true"], check=False)
    assert proc.returncode != 0 and "--segment=3 does not fit the job size (8)" in proc.stderr, proc
    assert _job_ids(block_cluster) == before


def test_a_segment_that_does_not_divide_the_node_count_is_refused(client: SlurmClient,
                                                                  block_cluster: Any) -> None:
    before = _job_ids(block_cluster)
    with pytest.raises(ConfigError, match=r"--segment=3 with -N 8: .*multiple of the segment size") as err:
        client.submit(SCRIPT, ["-N", "8", "--segment=3", "-H"], cwd=str(block_cluster.work_dir))
    assert "-N a multiple of 3" in (err.value.hint or "")
    assert _job_ids(block_cluster) == before  # nothing reached Slurm


def test_slurms_refusal_of_a_segment_says_why(client: SlurmClient, block_cluster: Any) -> None:
    """A node range is left to Slurm: -N 6-8 --segment=4 is refused at submission (6 % 4); the error
    carries Slurm's reason (slurmrestd's too, not only 'Batch job submission failed') and the fix. 26.05's
    sbatch refuses it before slurmctld, in its own words."""
    refusal = "Requested topology configuration is not available|--segment=4 does not fit the job size"
    with pytest.raises(SlurmError, match=refusal) as err:
        client.submit(SCRIPT, ["-N", "6-8", "--segment=4"], cwd=str(block_cluster.work_dir))
    assert err.value.hint == SEGMENT_RULE


def test_a_segment_size_cannot_be_updated(client: SlurmClient, block_cluster: Any) -> None:
    jid = client.submit(SCRIPT, ["-N", "8", "--segment=4", "-H"], cwd=str(block_cluster.work_dir))
    for key in ("SegmentSize", "segment_size"):
        with pytest.raises(ConfigError, match=f"{key}=2: Slurm sets a job's segment size only when the "
                                              "job is submitted") as err:
            client.update(jid, **{key: "2"})
        assert err.value.hint == "cancel the job and submit it again with --segment=N"
    _assert_segment_shown(block_cluster, jid, "4")


def test_slurm_itself_does_not_update_a_segment_size(block_cluster: Any, restd: Any) -> None:
    """Why the backends refuse: scontrol says it cannot; slurmrestd (like pyslurm's Job.modify, the
    same slurm_update_job RPC) accepts segment_size without an error or a warning and changes nothing."""
    from fabric_hpc.slurm.rest_backend import RestClient
    from tests.slurm_integration.restd import token

    jid = block_cluster.sbatch("-N8", "--segment=4", "-H", wrap="true")
    try:
        proc = block_cluster.run(["scontrol", "update", f"JobId={jid}", "SegmentSize=2"], check=False)
        assert proc.returncode != 0 and "Update of this parameter is not supported" in proc.stderr
        rest = RestClient(restd.url, token=token(block_cluster), env=block_cluster.env)
        answer = rest._call("POST", f"/job/{jid}", {"segment_size": 2})  # no error, no warning
        assert not answer.get("errors") and not answer.get("warnings")
        _assert_segment_shown(block_cluster, jid, "4")
    finally:
        _cancel(block_cluster, {jid})
