"""Parsers of Slurm answers: exact results for good input, a named ExternalError for bad input."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.slurm.cli_backend import job_from_json, job_from_scontrol, node_from_scontrol
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.parse import (Gres, gpu_count, gpu_indices, hosts, job_node_gres, parse_gres, parse_key_values,
                                    parse_state, reason_words)


@pytest.mark.parametrize("text,expected", [
    ("gpu:8(IDX:0-7)", [Gres("gpu", None, 8, tuple(range(8)))]),
    ("gpu:h100:8(S:0-1)", [Gres("gpu", "h100", 8, None, (0, 1))]),
    ("gres:gpu:3", [Gres("gpu", None, 3)]),
    ("gres/gpu:h100:2", [Gres("gpu", "h100", 2)]),
    ("gpu:h100:3(IDX:0-1,5)", [Gres("gpu", "h100", 3, (0, 1, 5))]),
    ("gpu:h100:0(IDX:N/A)", [Gres("gpu", "h100", 0, ())]),
    ("gpu:a100:2(IDX:0-1),nic:1", [Gres("gpu", "a100", 2, (0, 1)), Gres("nic", None, 1)]),
    ("(null)", []), ("", []), (None, []),
])
def test_parse_gres(text, expected):
    assert parse_gres(text) == expected


@pytest.mark.parametrize("bad", ["gpu:8(IDX:0-x)", "gpu:8(FOO:1)", "gpu::8", "8:gpu", "gpu:8(IDX:0-7"])
def test_malformed_gres_is_a_named_error(bad):
    with pytest.raises(ExternalError) as err:
        parse_gres(bad)
    assert bad[:5] in str(err.value)


def test_gpu_counts_and_indices():
    assert gpu_count("gres:gpu:h100:8") == 8
    assert gpu_indices("gpu:h100:3(IDX:0-2)") == (0, 1, 2)
    with pytest.raises(ExternalError, match="no GPU indices"):
        gpu_indices("gpu:3")
    with pytest.raises(ExternalError, match="3 GPUs but 2 indices"):
        gpu_indices("gpu:3(IDX:0-1)")


def test_states_reasons_hosts():
    assert parse_state("PENDING") == ("PENDING", ())
    assert parse_state("COMPLETING+REQUEUED") == ("COMPLETING", ("REQUEUED",))
    assert parse_state(["RUNNING"]) == ("RUNNING", ())
    for bad in ("", "WEIRD_STATE", "running now"):
        with pytest.raises(ExternalError):
            parse_state(bad)
    assert "start time" in reason_words("BeginTime")
    assert reason_words("SomethingNew") == "SomethingNew"
    assert hosts("n[1-3,7]") == ("n1", "n2", "n3", "n7")
    assert hosts("(null)") == ()
    with pytest.raises(ExternalError, match="malformed node list"):
        hosts("n[1-3")


LINE = ("JobId=7 JobName=wrap UserId=root(0) JobState=RUNNING Reason=None NodeList=n[1-2] NumNodes=2 "
        "Comment=fabric:within=leaf SubmitTime=2026-01-01T00:00:00 EligibleTime=2026-01-01T00:00:01 "
        "StartTime=2026-01-01T00:00:02 ReqNodeList=n[1-2] Priority=5 JOB_GRES=gpu:h100:6   Nodes=n1 CPU_IDs=0 "
        "Mem=0 GRES=gpu:h100:3(IDX:0-2)   Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:h100:3(IDX:4-6) TresPerNode=gres:gpu:3")


def test_scontrol_job_line():
    assert parse_key_values(LINE)["JobName"] == "wrap"
    assert job_node_gres(LINE) == {"n1": "gpu:h100:3(IDX:0-2)", "n2": "gpu:h100:3(IDX:4-6)"}
    job = job_from_scontrol(LINE)
    assert (job.job_id, job.state, job.nodes, job.gpus_per_node) == (7, "RUNNING", 2, 3)
    assert job.gpus == {"n1": (0, 1, 2), "n2": (4, 5, 6)}
    assert job.fabric_marked and job.fabric_options == "within=leaf"
    assert job.req_nodes == ("n1", "n2")
    with pytest.raises(ExternalError):
        job_from_scontrol("no pairs here")
    node = node_from_scontrol("NodeName=n3 State=IDLE+DRAIN Gres=gpu:h100:8(S:0-1) GresUsed=gpu:h100:0(IDX:N/A) "
                              "CPUTot=8 Partitions=debug")
    assert (node.name, node.state, node.gpus, node.usable) == ("n3", "idle", 8, False)


GOOD = {"job_id": 3, "job_state": "RUNNING", "nodes": "n[4-5]", "node_count": 2, "tres_per_node": "gres:gpu:8",
        "gres_detail": ["gpu:8(IDX:0-7)", "gpu:8(IDX:0-7)"], "comment": "fabric", "eligible_time": 10}


def test_squeue_json_job():
    job = job_from_json(GOOD)
    assert job.gpus == {"n4": tuple(range(8)), "n5": tuple(range(8))} and job.begin_time == 10.0


@pytest.mark.parametrize("change,words", [
    ({"job_id": "3"}, "'job_id' is str"),
    ({"job_state": "EXPLODED"}, "unknown job state 'EXPLODED'"),
    ({"gres_detail": ["gpu:8(IDX:0-7)"]}, "1 GRES details for 2 nodes"),
    ({"nodes": "n[4-"}, "malformed node list"),
])
def test_unexpected_json_is_a_named_error(change, words):
    with pytest.raises(ExternalError, match=words.replace("[", r"\[").replace("(", r"\(")):
        job_from_json({**GOOD, **change})
    with pytest.raises(SlurmError, match="no 'job_state' field"):
        job_from_json({k: v for k, v in GOOD.items() if k != "job_state"})
    json.dumps(GOOD)  # the fixture itself stays JSON
