"""Prometheus metrics of the agent, served on a loopback port (prometheus-client, own registry)."""

from __future__ import annotations

from typing import Any

from fabric_hpc.errors import ConfigError


class AgentMetrics:
    """``fabric_agent_*`` metrics on ``http://127.0.0.1:<port>/metrics``."""

    def __init__(self, port: int, *, addr: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        if not addr.startswith("127.") and addr not in ("localhost", "::1"):
            raise ConfigError(f"metrics address {addr!r}: the agent serves metrics on loopback only")
        self.registry = reg = CollectorRegistry()
        self.cycle_seconds = Histogram("fabric_agent_cycle_seconds", "Duration of one agent cycle", registry=reg,
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.pending = Gauge("fabric_agent_pending_jobs", "Fabric-marked jobs waiting for placement", registry=reg)
        self.pinned = Gauge("fabric_agent_pinned_jobs", "Jobs pinned by the agent, not started yet", registry=reg)
        self.placed = Counter("fabric_agent_placed", "Jobs placed (pinned and released)", registry=reg)
        self.requeued = Counter("fabric_agent_requeued", "Spot jobs requeued for a higher tier", registry=reg)
        self.errors = Counter("fabric_agent_errors", "Cycles that failed (Slurm unreachable, bad answer)",
                              registry=reg)
        self.cost = Histogram("fabric_agent_placement_cost", "Placement cost of each placed job", registry=reg,
                              buckets=(0, 1, 2, 5, 10, 20, 50, 100, 1000))
        self.utilisation = Gauge("fabric_agent_gpu_utilisation", "Allocated GPUs / GPUs up", registry=reg)
        self.server, self.thread = start_http_server(port, addr=addr, registry=reg)

    def observe(self, res: Any, view: Any) -> None:
        self.cycle_seconds.observe(res.seconds)
        self.pending.set(res.pending)
        self.pinned.set(len(view.pinned))
        self.placed.inc(len(res.started))
        self.requeued.inc(len(res.requeued))
        for s in res.started:
            self.cost.observe(float(s["cost"]))
        self.utilisation.set(view.state.utilisation())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
