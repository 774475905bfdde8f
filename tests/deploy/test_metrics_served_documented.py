"""SRE probe (metrics documented vs served, both directions): a scrape of the agent's ``/metrics`` held
five series docs/metrics.md named nowhere, the ``*_created`` gauges prometheus-client adds to each counter
and histogram (``fabric_agent_jobs_placed_created``, ...), while the harness section says its counters
carry none. Every family a scrape shows is now one docs/metrics.md names."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.slurm.metrics import AgentMetrics
from tests.deploy.test_metrics import _free_port

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def test_every_family_the_agent_serves_is_documented() -> None:
    port = _free_port()
    m = AgentMetrics(port, backend="cli", state_dir="/var/lib/fabric-agent")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        m.close()
    agent = DOCS[DOCS.index("## The agent"):DOCS.index("## The inference harness")]
    documented = set(re.findall(r"`(fabric_agent_[a-z_]+)`", agent))
    served = {f.name for f in text_string_to_metric_families(text)}  # a counter's family: without _total
    missing = sorted(n for n in served if n not in documented and f"{n}_total" not in documented)
    assert not missing, f"served, not in docs/metrics.md's agent section: {missing}"
