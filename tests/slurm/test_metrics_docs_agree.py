"""SRE probe: docs/slurm.md said ``fabric_agent_jobs_placed_total`` counts "every start the policy decided,
pins Slurm then refused included", while the agent (tests/slurm/test_agent_accepted_counts.py) and
docs/metrics.md count only the pins Slurm accepted: an SRE reading docs/slurm.md would build an alert on
``placed_total`` vs ``agent.failed`` that double counts. Both pages now say the same; each agent metric
docs/slurm.md names is one the agent serves."""

from __future__ import annotations

import re
from pathlib import Path

from fabric_hpc.slurm.metrics import AGENT_METRICS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _metrics_item() -> str:
    text = (DOCS / "slurm.md").read_text()
    start = text.index("- **Metrics** (`--metrics-port`")
    return text[start:text.index("\n- **", start + 1)]


def test_slurm_md_counts_placed_jobs_as_metrics_md_does() -> None:
    item = " ".join(_metrics_item().split())
    assert "refused included" not in item
    assert "pins Slurm accepted" in item
    assert "pins Slurm accepted" in (DOCS / "metrics.md").read_text()


def test_slurm_md_names_only_metrics_the_agent_serves() -> None:
    named = set(re.findall(r"`(fabric_agent_[a-z_]+)`", _metrics_item()))
    assert named == set(AGENT_METRICS)
