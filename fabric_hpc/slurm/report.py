"""``fabric slurm report``: the topology report of the live cluster, from what Slurm says now.

:func:`build` turns one ``nodes()`` and one ``jobs()`` answer (any backend, any Slurm version the
decoding layer reads) and, optionally, the agent's audit log into

* the occupancy the topology report draws (each running job's GPU indices mapped onto the fabric
  model, GPUs of unusable nodes and of hosts Slurm does not know drawn as down), and
* the page's cluster section: running jobs (user, tier, hosts, GPUs, domains spanned per level
  against the fewest the job could span, the modelled collective cost, the agent's decision),
  pending jobs (Slurm's reason and the agent's), unusable nodes, warnings, and cluster health.

A job's tier is the agent's (:class:`~fabric_hpc.slurm.tiers.TierMap`): with the agent's state directory the
report takes the agent's ``tier_map`` from its latest ``agent.start`` record in the audit log, else from its
``status.json``; ``tier_map.from`` on the page says which (without either: the comments and partitions alone).
A running job Slurm shows without a QOS (25.11 without slurmdbd) has the one the agent read while it was
pending (``<state_dir>/qos.json``, :mod:`fabric_hpc.slurm.qos_store`).

:func:`write` reads Slurm and writes the page (and a PNG); :func:`watch` rewrites it on an
interval until SIGINT/SIGTERM. Every Slurm answer and state file is untrusted: the audit log is
read from its last :data:`MAX_AUDIT_BYTES` only, a damaged line is counted and skipped, and
anything inconsistent (a host or GPU the fabric does not have, a GPU two jobs claim) is a warning
on the page, never silently dropped.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.errors import ConfigError, ExternalError, FabricError
from fabric_hpc.inputs import os_error
from fabric_hpc.hostlist import compress
from fabric_hpc.placement.state import DOWN, FREE, ClusterState
from fabric_hpc.slurm.audit import AUDIT_LOG, TAIL_BYTES, clock, read_tail
from fabric_hpc.slurm.contract import Job, Node, SlurmClient
from fabric_hpc.slurm.parse import reason_words
from fabric_hpc.slurm.qos_store import QosMemory
from fabric_hpc.slurm.report_health import domain_bounds, health, modelled_cost
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.slurm.view import UNATTRIBUTED, split_options
from fabric_hpc.topology import Fabric

#: The audit log is read from its end, at most this many bytes (older decisions are not shown).
MAX_AUDIT_BYTES = TAIL_BYTES
_MAX_SHOWN = 12  # GPU ids listed in one warning
_MAX_LIST_CHARS = 160  # a warning's host list: its compressed expression, cut to about this length


@dataclass
class AgentLog:
    """What the report takes from the agent's ``decisions.jsonl``: the latest entry per job."""

    placed: dict[int, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[int, dict[str, Any]] = field(default_factory=dict)
    handoff: dict[int, dict[str, Any]] = field(default_factory=dict)
    damaged: int = 0
    truncated: bool = False
    #: the agent's tier map (its latest ``agent.start`` record's config, else ``status.json``); None: none
    tiers: TierMap | None = None
    tiers_from: str = ""
    tier_problem: str = ""  # a damaged or unreadable tier map: a warning on the page
    #: the QOS the agent read per job while it was pending (``qos.json``): 25.11 without slurmdbd shows
    #: none once a job runs (:mod:`fabric_hpc.slurm.qos_store`)
    qos: dict[int, str] = field(default_factory=dict)


@dataclass
class ClusterReport:
    occupancy: dict[str, str]
    data: dict[str, Any]
    state: ClusterState | None = None  # what the page draws (owners by number, not by name)


def _when(ts: float) -> str:
    return clock(ts, "%Y-%m-%d %H:%M:%S UTC", utc=True)


def _num(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    return float(value) if ok else None


def _names(names: list[str]) -> str:
    """All the names as one host list (``su01-h[01-32]``); a longer list is cut (whole names) to
    about ``_MAX_LIST_CHARS`` characters and says how many more there are."""
    whole = compress(names)
    if len(whole) <= _MAX_LIST_CHARS:
        return whole
    lo, hi = 1, len(names) - 1  # the most leading names whose expression fits (at least one)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(compress(names[:mid])) <= _MAX_LIST_CHARS else (lo, mid - 1)
    return f"{compress(names[:lo])} and {len(names) - lo} more"


def _ids(ids: list[str]) -> str:
    """The first ``_MAX_SHOWN`` GPU ids, and how many more there are."""
    more = f" and {len(ids) - _MAX_SHOWN} more" if len(ids) > _MAX_SHOWN else ""
    return ", ".join(ids[:_MAX_SHOWN]) + more


# -- the agent's audit log ---------------------------------------------------------------------------
def read_agent_log(state_dir: str | Path) -> AgentLog:
    """The latest place/waiting/handoff entry per job from ``<state_dir>/decisions.jsonl``."""
    d = Path(state_dir)
    if not d.is_dir():
        raise ConfigError(f"no agent state directory {d}", hint="pass the --state-dir the agent runs with, or omit it")
    path = d / AUDIT_LOG
    try:
        tail = read_tail(d, MAX_AUDIT_BYTES)
    except FileNotFoundError:
        log = AgentLog(qos=_remembered_qos(d))
        _status_tiers(log, d)
        return log
    except PermissionError as exc:  # exit 5, as a permission error on any path (README)
        raise ExternalError(f"cannot read the agent's audit log {path}: {exc.strerror or exc}",
                            hint="run the report as a user who may read the agent's state directory") from None
    except OSError as exc:
        raise os_error(exc, "the agent's audit log", path) from None
    log = AgentLog(damaged=tail.damaged, truncated=tail.truncated, qos=_remembered_qos(d))
    for entry in tail.entries:
        _take(log, entry)
    if log.tiers is None:
        _status_tiers(log, d)
    return log


def _remembered_qos(d: Path) -> dict[int, str]:
    """The agent's ``qos.json`` (job id -> QOS); empty where it is missing or not the agent's."""
    memory = QosMemory(d)
    return memory.jobs if memory.load() is None else {}


def _tier_map(log: AgentLog, entries: Any, where: str) -> TierMap | None:
    """The agent's ``tier_map`` entries as it recorded them; a damaged one is a warning (None)."""
    try:
        if isinstance(entries, list) and all(isinstance(e, str) for e in entries) and len(entries) <= 4096:
            return TierMap.parse(entries)
        problem = "not a list of KIND:NAME=TIER entries"
    except ConfigError as exc:
        problem = exc.message
    log.tier_problem = f"{where}: the agent's tier_map is damaged ({problem[:200]}): not used"
    return None


def _status_tiers(log: AgentLog, d: Path) -> None:
    """The tier map from ``status.json`` (the agent writes it every cycle) when no start record was read."""
    from fabric_hpc.inputs import read_json

    path = d / "status.json"
    try:
        status = read_json(path, what="agent status file", limit=64 << 20)
    except FabricError as exc:
        if path.exists():
            log.tier_problem = f"cannot read {path} for the agent's tier map: {exc.message[:200]}"
        return
    if isinstance(status, dict) and "tier_map" in status:
        log.tier_problem = ""
        log.tiers = _tier_map(log, status["tier_map"], str(path))
        ts = _num(status.get("ts"))
        log.tiers_from = f"{path} ({_when(ts)})" if ts is not None and abs(ts) < 1e11 else str(path)


def _take(log: AgentLog, e: dict[str, Any]) -> None:
    kind, ts = e["event"].removeprefix("agent."), float(e["ts"])
    job = e.get("job")
    if kind == "start" and isinstance(e.get("config"), dict):  # entries come oldest first: the latest wins
        log.tiers_from, log.tier_problem = f"the agent.start record of {_when(ts)}", ""
        log.tiers = _tier_map(log, e["config"].get("tier_map", []), log.tiers_from)
    elif kind in ("place", "handoff") and isinstance(job, int) and not isinstance(job, bool):
        if kind == "place":
            hosts = e.get("hosts")
            log.placed[job] = {"solver": str(e.get("solver", "?"))[:40], "cost": _num(e.get("cost")), "ts": ts,
                               "time": _when(ts), "hosts": [str(h) for h in hosts][:4096]
                               if isinstance(hosts, list) else []}
        else:
            log.handoff[job] = {"reason": str(e.get("reason", ""))[:300], "ts": ts, "time": _when(ts)}
    elif kind == "waiting" and isinstance(e.get("jobs"), dict):
        for key, why in e["jobs"].items():
            if isinstance(key, str) and key.isdigit() and len(key) < 20:
                log.waiting[int(key)] = {"reason": str(why)[:300], "ts": ts, "time": _when(ts)}


# -- from Slurm's answer to the report ---------------------------------------------------------------
def build(fab: Fabric, nodes: list[Node], jobs: list[Job], *, now: float, agent: AgentLog | None = None,
          backend: str = "") -> ClusterReport:
    """The occupancy and the page's cluster section for one Slurm answer (pure: no I/O)."""
    known = set(fab.host_pos)
    warnings: list[str] = []
    if agent is not None and agent.qos:  # the QOS Slurm no longer shows of a running job (qos_store)
        jobs = [replace(j, qos=agent.qos[j.job_id]) if j.fabric_marked and not j.qos and j.job_id in agent.qos
                else j for j in jobs]
    state = ClusterState(fab)
    active = sorted((j for j in jobs if j.active), key=lambda j: j.job_id)
    held = {j.job_id: _allocate(fab, state, j, warnings) for j in active}
    _unattributed(fab, state, nodes, warnings)
    _gpu_counts(fab, state, nodes, warnings)
    unusable = [n for n in nodes if n.name in known and not n.usable]
    in_slurm = {n.name for n in nodes}
    missing = [h for h in fab.hosts if h not in in_slurm]
    _down(fab, state, [n.name for n in unusable] + missing)
    strange = sorted({n.name for n in nodes} - known)
    if strange:
        warnings.append(f"Slurm knows {len(strange)} node(s) the fabric model does not (not drawn): "
                        f"{_names(strange)}")
    if missing:
        warnings.append(f"the fabric model has {len(missing)} host(s) Slurm does not know (drawn as down): "
                        f"{_names(missing)}")
    _agent_warnings(agent, warnings)
    for j in active:
        if j.gpus_per_node and not j.gpus and j.node_list:
            warnings.append(f"job {j.job_id} asked for {j.gpus_per_node} GPU(s) per node but Slurm reported no GPU "
                            "indices for it (listed without GPUs)")
    tiers = agent.tiers if agent is not None else None
    running = [_running(fab, state, j, held[j.job_id], agent, tiers) for j in active
               if held[j.job_id] or j.node_list]
    pending = [_pending(j, agent, now, tiers) for j in sorted(jobs, key=lambda j: j.job_id) if j.pending]
    data = {"generated": _when(now), "generated_ts": round(now, 3), "backend": backend,
            "slurm_nodes": len(nodes), "agent_log": agent is not None,
            "tier_map": {"entries": tiers.entries() if tiers is not None else None,
                         "from": agent.tiers_from if tiers is not None and agent is not None else None},
            "health": health(fab, state, running, pending),
            "warnings": warnings, "running": running, "pending": pending,
            "nodes": [{"node": n.name, "state": n.state, "flags": list(n.flags)} for n in unusable]}
    return ClusterReport(occupancy=state.occupancy(), data=data, state=state)


def _allocate(fab: Fabric, state: ClusterState, job: Job, warnings: list[str]) -> list[int]:
    """Give the job its GPUs on the fabric model; what does not map is a warning. Returns GPU indices."""
    out, off, beyond, clash = [], [], [], []
    for host, indices in sorted(job.gpus.items()):
        if host not in fab.host_pos:
            off.append(host)
            continue
        gpus = fab.host_gpus(host)
        for i in indices:
            if i >= len(gpus):
                beyond.append(f"{host}/gpu{i}")
            elif state.owner[fab.gpu_pos[gpus[i]]] != FREE:
                clash.append(gpus[i])
            else:
                out.append(fab.gpu_pos[gpus[i]])
    jid = job.job_id
    if off:
        warnings.append(f"job {jid} runs on node(s) the fabric model does not have: {_names(off)}")
    if beyond:
        warnings.append(f"job {jid} holds GPU(s) the fabric model does not have: {_ids(beyond)}")
    if clash:
        warnings.append(f"job {jid} holds GPU(s) another job holds too (drawn for the first): "
                        f"{_ids(clash)}")
    if out:
        state.allocate(str(jid), np.array(out, np.int64))
    return out


def _unattributed(fab: Fabric, state: ClusterState, nodes: list[Node], warnings: list[str]) -> None:
    """GPUs a node reports in use that no job we saw holds (a race, or a job we may not see)."""
    seen = []
    for node in nodes:
        if node.name not in fab.host_pos:
            continue
        gpus = fab.host_gpus(node.name)
        seen += [fab.gpu_pos[gpus[i]] for i in node.gpus_used
                 if i < len(gpus) and state.owner[fab.gpu_pos[gpus[i]]] == FREE]
    if seen:
        state.allocate(UNATTRIBUTED, np.array(seen, np.int64))
        warnings.append(f"{len(seen)} GPU(s) are in use according to their node but no job Slurm listed holds "
                        f"them (shown as {UNATTRIBUTED})")


def _gpu_counts(fab: Fabric, state: ClusterState, nodes: list[Node], warnings: list[str]) -> None:
    """A node whose GPU count in Slurm (its GRES) differs from the model's is a warning (the agent's);
    the model's GPUs past Slurm's count are drawn as down unless a job holds them: Slurm cannot
    give them out, so they are not free."""
    from fabric_hpc.slurm.agent_support import gpu_mismatch

    text = gpu_mismatch(fab, nodes)
    if text is None:
        return
    lacking = [fab.gpu_pos[g] for n in nodes if n.name in fab.host_pos
               for g in fab.host_gpus(n.name)[max(n.gpus, 0):]]
    idx = np.array(lacking, np.int64)
    state.owner[idx[state.owner[idx] == FREE]] = DOWN
    warnings.append(text + ("; the model's GPUs Slurm does not have are drawn as down" if lacking else ""))


def _down(fab: Fabric, state: ClusterState, hosts: list[str]) -> None:
    """Free GPUs of these hosts are down (a draining node keeps its running jobs' colours)."""
    idx = np.array([fab.gpu_pos[g] for h in hosts for g in fab.host_gpus(h)], np.int64)
    if idx.size:
        state.owner[idx[state.owner[idx] == FREE]] = DOWN


def _agent_warnings(agent: AgentLog | None, warnings: list[str]) -> None:
    if agent is None:
        return
    if agent.damaged:
        warnings.append(f"{agent.damaged} damaged line(s) in the agent's audit log were skipped")
    if agent.truncated:
        warnings.append(f"the agent's audit log is longer than {MAX_AUDIT_BYTES >> 20} MiB: only its end was read")
    if agent.tier_problem:
        warnings.append(agent.tier_problem)
    if agent.tiers is None:
        warnings.append("the agent's tier map was not found (no agent.start record in its audit log's end, "
                        "no tier_map in its status.json): tiers are the jobs' comments and partitions alone, "
                        "which the agent's --tier-map may override")


def _running(fab: Fabric, state: ClusterState, job: Job, gpus: list[int], agent: AgentLog | None,
             tiers: TierMap | None) -> dict[str, Any]:
    idx = fab.index
    if gpus:
        hosts = sorted({fab.hosts[h] for h in idx.gpu_host[gpus].tolist()}, key=fab.host_pos.__getitem__)
        spans, bounds = domain_bounds(fab, np.array(gpus, np.int64))
    else:  # a job without GPUs (or whose indices Slurm did not report): where it runs, nothing more
        hosts, spans, bounds = [h for h in job.node_list if h in fab.host_pos], {}, {}
    _, tier = split_options(job, tiers)
    decision = _decision(agent, job.job_id, hosts)
    return {"job": str(job.job_id), "name": job.name[:200], "user": job.user[:64], "partition": job.partition[:64],
            "tier": tier, "state": job.state, "fabric": job.fabric_marked, "hosts": hosts,
            "hostlist": compress(hosts), "gpus": len(gpus), "spans": spans, "min_spans": bounds,
            "spread": len(hosts) > 1 and any(spans[k] > bounds[k] for k in bounds),
            "cost": modelled_cost(fab, state, str(job.job_id), gpus) if gpus else None,
            "started": _when(job.start_time) if job.start_time else None, "decision": decision}


def _decision(agent: AgentLog | None, job_id: int, hosts: list[str]) -> dict[str, Any] | None:
    """The agent's latest decision about a running job: its pin (``hosts``, ``same_hosts``: Slurm ran
    it there) or, when later, its hand-over to Slurm (``handoff``: the reason); None: neither."""
    if agent is None:
        return None
    placed, handoff = agent.placed.get(job_id), agent.handoff.get(job_id)
    if handoff is not None and (placed is None or handoff["ts"] >= placed["ts"]):
        return {"handoff": handoff["reason"], "ts": handoff["ts"], "time": handoff["time"]}
    if placed is None:
        return None
    return {**placed, "same_hosts": sorted(placed["hosts"]) == sorted(hosts)}


def _pending(job: Job, agent: AgentLog | None, now: float, tiers: TierMap | None) -> dict[str, Any]:
    _, tier = split_options(job, tiers)
    why = None
    if agent is not None:
        why = agent.waiting.get(job.job_id) or agent.handoff.get(job.job_id)
    waited = now - job.submit_time if job.submit_time else None
    return {"job": str(job.job_id), "name": job.name[:200], "user": job.user[:64], "tier": tier,
            "nodes": job.nodes, "gpus_per_node": job.gpus_per_node, "fabric": job.fabric_marked,
            "slurm_reason": job.reason[:100], "slurm_reason_words": reason_words(job.reason)[:300],
            "blocked": job.blocked,
            "agent_reason": why["reason"] if why else None, "agent_reason_time": why.get("time") if why else None,
            "pinned": compress(list(job.req_nodes)) if job.fabric_marked and job.req_nodes else None,
            "waiting_s": round(max(waited, 0.0), 1) if waited is not None else None}


# -- writing it ---------------------------------------------------------------------------------------
def write(client: SlurmClient, fab: Fabric, out_html: str | Path, *, png: str | Path | None = None,
          state_dir: str | Path | None = None, title: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Read Slurm, write the page (and PNG) atomically; returns a summary for ``--json``."""
    from fabric_hpc.topology.report import write_report

    nodes, jobs = client.nodes(), client.jobs()
    agent = read_agent_log(state_dir) if state_dir is not None else None
    rep = build(fab, nodes, jobs, now=time.time() if now is None else now, agent=agent, backend=client.backend)
    summary = write_report(fab, out_html, state=rep.state, png=png, cluster=rep.data,
                           title=title or f"Cluster {fab.name} (Slurm)")
    colors = {j: s.color for j, s in summary.jobs.items()}
    d = rep.data
    return {"html": summary.html, "html_bytes": summary.html_bytes, "png": summary.png,
            "generated": d["generated"], "hosts": summary.hosts, "gpus": summary.gpus, "free": summary.free,
            "allocated": summary.allocated, "down": summary.down, "health": d["health"], "warnings": d["warnings"],
            "running": [{**r, "color": colors.get(r["job"])} for r in d["running"]], "pending": d["pending"],
            "nodes": d["nodes"], "tier_map": d["tier_map"]}


def watch(once: Callable[[], Any], interval_s: float, *, on_error: Callable[[FabricError], None],
          stop: threading.Event | None = None, signals: bool = True, first_wait: bool = False) -> int:
    """Call ``once`` every ``interval_s`` until SIGINT/SIGTERM (or ``stop``); returns the cycles run.

    A failed cycle (Slurm down, a bad answer) goes to ``on_error`` and the last good page stays.
    ``first_wait``: wait one interval before the first call (the caller has just made one).
    """
    stop = stop or threading.Event()
    old = {}
    if signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    cycles = 0
    try:
        if first_wait:
            stop.wait(interval_s)
        while not stop.is_set():
            try:
                once()
            except FabricError as exc:
                if not stop.is_set():  # a child killed by the same Ctrl-C is not worth a message
                    on_error(exc)
            cycles += 1
            stop.wait(interval_s)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return cycles


def summary_line(out: dict[str, Any]) -> str:
    """One line for the terminal: what was written and what the page says."""
    h = out["health"]
    text = (f"wrote {out['html']} ({out['html_bytes'] / 1024:.0f} KiB, {out['generated']}): {out['gpus']} GPUs, "
            f"{out['free']} free, {out['allocated']} allocated, {out['down']} down; {len(out['running'])} running, "
            f"{len(out['pending'])} pending; {h['stranded_gpus']} free GPU(s) no waiting gang can use, "
            f"{h['spread_gangs']}/{h['multi_host_gangs']} multi-host gang(s) spread")
    text += f"; wrote {out['png']}" if out.get("png") else ""
    return text + "".join(f"\nwarning: {w}" for w in out["warnings"])
