"""Prometheus metrics of the agent, served on a loopback port (prometheus-client, own registry).

Names follow Prometheus conventions (base units: seconds; counters end in ``_total``; ratios in
``_ratio``) and Slurm 25.11's OpenMetrics names (``MetricsType=metrics/openmetrics``) where they
describe the same thing: ``slurm_jobs_pending`` → ``fabric_agent_jobs_pending`` (only the
fabric-marked jobs), ``slurm_schedule_cycle_*`` → ``fabric_agent_schedule_cycle_seconds``,
``slurm_jobs_cpus_alloc`` / ``slurm_node_cpus`` → ``fabric_agent_gpus_alloc`` / ``fabric_agent_gpus``.
No metric carries a per-job label: the series count is fixed. The list: docs/metrics.md.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.state import DOWN

#: every metric the agent serves: name -> (type, help). docs/metrics.md lists the same names (a test checks).
AGENT_METRICS: dict[str, tuple[str, str]] = {
    "fabric_agent_schedule_cycle_seconds": ("histogram", "Duration of one agent cycle (read Slurm, decide, act)"),
    "fabric_agent_jobs_pending": ("gauge", "Fabric-marked jobs waiting for placement"),
    "fabric_agent_jobs_pinned": ("gauge", "Jobs pinned by the agent, not started yet"),
    "fabric_agent_jobs_placed_total": ("counter", "Jobs placed (pinned to their hosts and released)"),
    "fabric_agent_jobs_requeued_total": ("counter", "Spot jobs requeued for a higher tier"),
    "fabric_agent_errors_total": ("counter", "Cycles that failed (Slurm unreachable, bad answer, bug)"),
    "fabric_agent_placement_cost": ("histogram", "Placement cost of each placed job (fabric cost units)"),
    "fabric_agent_gpus": ("gauge", "GPUs on nodes that are up"),
    "fabric_agent_gpus_alloc": ("gauge", "GPUs allocated to jobs"),
    "fabric_agent_gpus_alloc_ratio": ("gauge", "Allocated GPUs / GPUs up (0-1)"),
    "fabric_agent_last_cycle_timestamp_seconds": ("gauge", "UNIX time of the last good cycle (the heartbeat)"),
    "fabric_agent_info": ("gauge", "Always 1; labels: version, backend, protocol, state_dir"),
    "fabric_agent_usage_from_slurm": ("gauge", "1 while the fairshare usage is Slurm's (sshare), 0 while the ledger's"),
}


def port_error(exc: OSError, addr: str, port: int) -> ConfigError:
    """Why ``addr:port`` cannot be served, naming the port (not a path) and the fix for its cause."""
    if exc.errno in (errno.EACCES, errno.EPERM):  # a privileged port without CAP_NET_BIND_SERVICE
        hint = (f"ports below 1024 need root or CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities="
                "CAP_NET_BIND_SERVICE); or choose a metrics_port (--metrics-port) of 1024 or more, such as 9108")
    else:  # EADDRINUSE above all
        hint = f"choose another metrics_port (--metrics-port), or stop what listens there (ss -ltnp 'sport = :{port}')"
    return ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}", hint=hint)


def check_port(port: int, addr: str = "127.0.0.1") -> None:
    """ConfigError (:func:`port_error`) when ``addr:port`` cannot be bound now; bound and released at
    once, with the server's own options (``SO_REUSEADDR``), so a port in TIME_WAIT passes as it would."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr, port))
    except OSError as exc:
        raise port_error(exc, addr, port) from None


def gpu_counts(view: Any) -> tuple[int, int]:
    """GPUs up and GPUs allocated in a cycle's view: a draining node's count as up, its running jobs' as
    allocated (the view's state keeps that node down, so that nothing is placed there)."""
    owner = view.state.owner
    return (int((owner != DOWN).sum()) + getattr(view, "drain_gpus", 0),
            int((owner >= 0).sum()) + getattr(view, "drain_alloc", 0))


def label_text(text: str) -> str:
    """``text`` as a label value Prometheus can carry (UTF-8): a file name's bytes that are not UTF-8
    (a lone surrogate as Python reads them) are written ``\\xff`` and a backslash ``\\\\`` (so that a
    name holding the four characters ``\\xff`` reads differently); other text is kept as it is."""
    text = text.replace("\\", "\\\\")
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name holds (U+D800...U+DC7F)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def served_state_dir(text: str) -> str | None:
    """The ``state_dir`` label of ``fabric_agent_info`` in a ``/metrics`` answer ('' for an agent that does
    not name it), None when the answer is not a fabric agent's."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "fabric_agent_info":
                    return sample.labels.get("state_dir", "")
    except ValueError:  # not Prometheus text
        return None
    return None


class AgentMetrics:
    """``fabric_agent_*`` metrics on ``http://127.0.0.1:<port>/metrics``."""

    def __init__(self, port: int, *, addr: str = "127.0.0.1", backend: str = "?",
                 state_dir: str = "") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        from fabric_hpc import __version__
        from fabric_hpc.slurm.plugins import PROTOCOL_VERSION

        if not addr.startswith("127.") and addr not in ("localhost", "::1"):
            raise ConfigError(f"metrics address {addr!r}: the agent serves metrics on loopback only")
        self.registry = reg = CollectorRegistry()

        def doc(name: str) -> str:
            return AGENT_METRICS[name][1]

        def gauge(name: str) -> Any:
            return Gauge(name, doc(name), registry=reg)

        def counter(name: str) -> Any:  # prometheus-client appends _total
            return Counter(name.removesuffix("_total"), doc(name), registry=reg)

        self.cycle_seconds = Histogram("fabric_agent_schedule_cycle_seconds", doc("fabric_agent_schedule_cycle_seconds"),
                                       registry=reg, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.pending, self.pinned = gauge("fabric_agent_jobs_pending"), gauge("fabric_agent_jobs_pinned")
        self.placed, self.requeued = counter("fabric_agent_jobs_placed_total"), counter("fabric_agent_jobs_requeued_total")
        self.errors = counter("fabric_agent_errors_total")
        self.cost = Histogram("fabric_agent_placement_cost", doc("fabric_agent_placement_cost"), registry=reg,
                              buckets=(0, 1, 2, 5, 10, 20, 50, 100, 1000))
        self.gpus, self.gpus_alloc = gauge("fabric_agent_gpus"), gauge("fabric_agent_gpus_alloc")
        self.utilisation = gauge("fabric_agent_gpus_alloc_ratio")
        self.last_cycle = gauge("fabric_agent_last_cycle_timestamp_seconds")
        self.usage_from_slurm = gauge("fabric_agent_usage_from_slurm")
        Gauge("fabric_agent_info", doc("fabric_agent_info"), ["version", "backend", "protocol", "state_dir"],
              registry=reg).labels(__version__, backend, str(PROTOCOL_VERSION), label_text(state_dir)).set(1)
        try:
            self.server, self.thread = start_http_server(port, addr=addr, registry=reg)
        except OSError as exc:
            raise port_error(exc, addr, port) from None

    def observe(self, res: Any, view: Any) -> None:
        self.cycle_seconds.observe(res.seconds)
        self.pending.set(res.pending)
        self.pinned.set(len(view.pinned))
        self.placed.inc(len(res.placed))  # what Slurm accepted, not what the policy decided
        self.requeued.inc(len(res.requeues_done))
        for s in res.placed:
            self.cost.observe(float(s["cost"]))
        up, alloc = gpu_counts(view)
        self.gpus.set(up)
        self.gpus_alloc.set(alloc)
        self.utilisation.set(alloc / up if up else 0.0)
        self.last_cycle.set(time.time())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
