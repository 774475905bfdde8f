"""A reproducible mixed job sequence and a runner that watches it on a live cluster."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fabric_hpc.slurm.cli_backend import CliClient


@dataclass(frozen=True)
class Spec:
    args: tuple[str, ...]
    seconds: int
    nodes: int
    gang: bool


def mixed_sequence(n: int = 50, seed: int = 5) -> list[Spec]:
    """Gangs of 2-4 whole hosts, half-host gangs, single-GPU jobs; tiers via the fabric comment."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r, secs = rng.random(), rng.choice([1, 2, 3])
        tier = rng.choice(["", "", ":tier=high"])
        if r < 0.55:
            nodes = rng.choice([2, 2, 3, 4])
            out.append(Spec((f"-N{nodes}", "--gres=gpu:8", f"--comment=fabric{tier}"), secs, nodes, True))
        elif r < 0.75:
            out.append(Spec(("-N2", "--gres=gpu:4", f"--comment=fabric{tier}"), secs, 2, True))
        else:
            out.append(Spec(("-N1", f"--gres=gpu:{rng.choice([1, 2, 4])}"), secs, 1, False))
    return out


@dataclass
class Observed:
    job_ids: list[int] = field(default_factory=list)
    nodes: dict[int, tuple[str, ...]] = field(default_factory=dict)
    double_booked: list[str] = field(default_factory=list)
    polls: int = 0
    seconds: float = 0.0
    last: list[str] = field(default_factory=list)  # the latest poll's jobs (for a timeout's message)


def run_sequence(cluster: Any, seq: list[Spec], timeout: float = 150.0) -> Observed:
    """Submit every job with sbatch, poll ``squeue --json`` until all are gone, check GPU exclusivity."""
    return run_sequences([(cluster, seq)], timeout=timeout)[0]


def run_sequences(runs: list[tuple[Any, list[Spec]]], timeout: float = 150.0) -> list[Observed]:
    """:func:`run_sequence` on several clusters side by side: the k-th job of every sequence is
    submitted before the (k+1)-th of any, then one loop polls them all until each queue is empty."""
    t0 = time.monotonic()
    ids: list[list[int]] = [[] for _ in runs]
    for k in range(max(len(seq) for _, seq in runs)):
        for mine, (cluster, seq) in zip(ids, runs, strict=True):
            if k < len(seq):
                mine.append(cluster.sbatch(*seq[k].args, wrap=f"sleep {seq[k].seconds}"))
    return watch_many([(cluster, mine) for mine, (cluster, _) in zip(ids, runs, strict=True)],
                      timeout=timeout, t0=t0)


def watch(cluster: Any, ids: list[int], *, timeout: float = 150.0, t0: float | None = None) -> Observed:
    """Poll until the jobs ``ids`` are all gone from the queue, recording nodes and GPU clashes."""
    return watch_many([(cluster, ids)], timeout=timeout, t0=t0)[0]


def watch_many(runs: list[tuple[Any, list[int]]], *, timeout: float = 150.0,
               t0: float | None = None) -> list[Observed]:
    """:func:`watch` of several clusters in one loop (each polled every 0.25 s); each ``seconds`` is
    the time until its own queue was empty."""
    t0 = time.monotonic() if t0 is None else t0
    clients = [CliClient(cluster.env) for cluster, _ in runs]
    out = [Observed(job_ids=list(ids)) for _, ids in runs]
    busy = set(range(len(runs)))
    while busy:
        for i in sorted(busy):
            if not _poll(clients[i], out[i]):
                out[i].seconds = time.monotonic() - t0
                busy.discard(i)
        if busy:
            assert time.monotonic() - t0 < timeout, f"jobs still queued after {timeout} s: " + ", ".join(
                job for i in sorted(busy) for job in out[i].last)
            time.sleep(0.25)
    for (cluster, _), obs in zip(runs, out, strict=True):
        for jid in obs.job_ids:  # a job too short for a poll to see running: take its final node list
            if jid not in obs.nodes:
                obs.nodes[jid] = tuple(cluster.hostnames(cluster.job(jid)["NodeList"]))
    return out


def _poll(client: CliClient, obs: Observed) -> bool:
    """One look at the queue: record nodes and GPU clashes; True while a job of ``obs`` is not done."""
    mine = set(obs.job_ids)
    jobs = [j for j in client.jobs() if j.job_id in mine]
    obs.polls += 1
    used: dict[tuple[str, int], int] = {}
    for j in jobs:
        if j.node_list and j.state == "RUNNING":
            obs.nodes.setdefault(j.job_id, j.node_list)
            for host, idx in j.gpus.items():
                for i in idx:
                    other = used.setdefault((host, i), j.job_id)
                    if other != j.job_id:
                        obs.double_booked.append(f"{host}/gpu{i}: jobs {other} and {j.job_id}")
    obs.last = [f"{j.job_id}:{j.state}:{j.reason}" for j in jobs[:10]]
    return any(j.state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for j in jobs)


def leaves_spanned(fab: Any, hosts: tuple[str, ...]) -> int:
    return len({dict(fab.domains(h))["leaf"] for h in hosts})


def mean_leaves(fab: Any, seq: list[Spec], obs: Observed) -> tuple[float, int]:
    """Mean leaves per multi-node job, and how many multi-node jobs spanned more than one leaf."""
    spans = [leaves_spanned(fab, obs.nodes[j]) for j, s in zip(obs.job_ids, seq, strict=True) if s.nodes > 1]
    return sum(spans) / len(spans), sum(1 for s in spans if s > 1)


def per_node(counts: dict[int, tuple[str, ...]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for hosts in counts.values():
        for h in hosts:
            out[h] += 1
    return dict(out)
