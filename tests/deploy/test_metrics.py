"""Metric names an SRE can use: Prometheus conventions, Slurm/DCGM names, every one in docs/metrics.md."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.inference.telemetry import BUDGET, METRICS, QUEUE_DEPTH, prometheus_text
from fabric_hpc.placement import ClusterState
from fabric_hpc.slurm.agent import CycleResult
from fabric_hpc.slurm.metrics import AGENT_METRICS, AgentMetrics
from fabric_hpc.topology import open_fabric

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
CONVENTION = re.compile(r"^(fabric_[a-z_]+|DCGM_FI_[A-Z_]+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_serves_exactly_the_documented_names() -> None:
    fab = open_fabric("superpod:sus=1")
    state = ClusterState(fab)
    state.allocate("j1", list(fab.host_gpus(fab.hosts[0])))
    port = _free_port()
    m = AgentMetrics(port, backend="cli")
    try:
        m.observe(CycleResult(started=[{"job": 1, "cost": 2.5}], pending=3), SimpleNamespace(pinned=[1], state=state))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        m.close()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, _) in AGENT_METRICS.items():
        family = name.removesuffix("_total") if kind == "counter" else name
        assert fams[family].type == kind, name
        assert f"`{name}`" in DOCS, f"docs/metrics.md does not list {name}"
    served = {s.name for f in fams.values() for s in f.samples if s.name.startswith("fabric_agent_")}
    assert "fabric_agent_jobs_placed_total" in served and "fabric_agent_schedule_cycle_seconds_count" in served
    values = {s.name: s.value for f in fams.values() for s in f.samples}
    assert values["fabric_agent_gpus"] == 256 and values["fabric_agent_gpus_alloc"] == 8
    assert values["fabric_agent_gpus_alloc_ratio"] == 8 / 256 and values["fabric_agent_jobs_pending"] == 3
    assert all("job" not in s.labels for f in fams.values() for s in f.samples)  # no per-job label in the agent


def test_names_follow_prometheus_conventions() -> None:
    for name, (kind, _) in AGENT_METRICS.items():
        assert CONVENTION.match(name) and (name.endswith("_total") == (kind == "counter")), name
        assert not re.search(r"_(ms|milliseconds|percent|utilisation|utilization)$", name), name
    for key, (name, kind, _, _) in METRICS.items():
        assert CONVENTION.match(name) and f"`{name}`" in DOCS, name
        assert name.endswith("_total") == (kind == "counter"), name
    assert f"`{QUEUE_DEPTH}`" in DOCS and f"`{BUDGET}`" in DOCS


def test_harness_text_uses_dcgm_names_and_a_bounded_job_label() -> None:
    snap = {"items_done": 40, "items_in": 48, "padding_waste": 0.25, "gpu_util": 87.0, "gpu_sm_util": 62.0,
            "queue_depths": {"lanes": 2}}
    fams = {f.name: f for f in text_string_to_metric_families(
        prometheus_text(snap, rank=3, gpu=1, job_id="4242").decode())}
    assert fams["fabric_infer_items_completed"].type == "counter"
    assert fams["fabric_infer_items_completed"].samples[0].value == 40
    util = fams["DCGM_FI_DEV_GPU_UTIL"].samples[0]
    assert util.value == 87.0 and util.labels == {"rank": "3", "job_id": "4242", "gpu": "1"}
    assert fams["DCGM_FI_PROF_SM_ACTIVE"].samples[0].value == 0.62  # DCGM's unit: a ratio, not percent
    assert fams["fabric_infer_padding_waste_ratio"].samples[0].labels == {"rank": "3", "job_id": "4242"}
    plain = {f.name: f for f in text_string_to_metric_families(prometheus_text(snap, rank=0).decode())}
    assert plain["fabric_infer_queue_depth"].samples[0].labels == {"rank": "0", "stage": "lanes"}
