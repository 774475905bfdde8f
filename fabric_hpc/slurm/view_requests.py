"""What a Slurm job asks fabric for, read from Slurm's answer: its placement request (``-N`` × GPUs
per node plus the ``fabric:`` options of its ``--comment``), its tier (comment, QOS, partition), its
fairshare account, and the ``ExcNodeList`` that keeps a job handed to Slurm on its ``include=`` hosts.
Pure functions of the job record (the view, the agent's hand-overs and ``why`` use them)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress, select
from fabric_hpc.placement.request import Request, request_fields
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.validation import parse_model


def account_of(job: Job) -> str:
    """The fairshare account: the Slurm account, else the user (a Slurm without accounts), else 'default'."""
    return job.account or job.user or "default"


def split_options(job: Job, tiers: TierMap | None = None) -> tuple[str, str]:
    """(request options for placement, tier) from the job's ``fabric:`` comment, QOS and partition."""
    opts, tier = _comment_options(job.fabric_options)
    return opts, (tiers or _NO_TIERS).tier(job.qos, job.partition, tier)


_NO_TIERS = TierMap()


@functools.lru_cache(maxsize=1024)
def _comment_options(options: str) -> tuple[str, str | None]:
    """(request options, ``tier=`` value or None) of a comment's fabric options (thousands of jobs
    share a few comments: each is split once)."""
    opts, tier = [], ""
    for part in options.split(","):
        key, _, value = part.strip().partition("=")
        if not key:
            continue
        if key == "tier":
            tier = value
        else:
            opts.append(part.strip())  # host lists keep their ';' (request_fields reads it)
    return ",".join(opts), tier or None


def _request_or_none(job: Job) -> Request | None:
    """:func:`request_of`, or None where the job's request is not one (the cycle says so elsewhere)."""
    try:
        return request_of(job)
    except ConfigError:
        return None


def request_of(job: Job) -> Request:
    """The placement request of a Slurm job: ``-N`` nodes × GPUs per node as Slurm gives them, plus
    the fabric options of its ``--comment`` (which may not set the size again)."""
    if job.gpus_per_node < 1:
        raise ConfigError(f"job {job.job_id} asks for no GPUs per node (TresPerNode)")
    opts, _ = split_options(job)
    try:
        return _request(job.nodes, job.gpus_per_node, opts)
    except ConfigError as exc:  # the message names the job
        raise ConfigError(f"job {job.job_id} {exc.message}", hint=exc.hint) from None


def kept_out(job: Job, node_names: Collection[str]) -> str | None:
    """The ``ExcNodeList`` a job handed over to Slurm needs so that Slurm, too, starts it only on its
    ``include=`` hosts (``-w`` means "all of these", so "only these" is "none of the others"): every
    node Slurm reports outside that list, joined to the job's own exclusions; None when the job has no
    ``include=`` (or a comment that does not parse: nothing to keep it to) or that excludes nothing new."""
    opts, _ = split_options(job)
    try:
        include = request_fields(opts, source="--comment").get("include") if opts else None
        allowed = select(include, node_names) if include else None  # not expanded: n[1-99998]
    except ConfigError:
        return None
    if allowed is None:
        return None
    out = {n for n in node_names if n not in allowed}
    if out <= set(job.exc_nodes):
        return None
    return compress(sorted(out | set(job.exc_nodes)))


def handoff_exclusions(nodes: list[Node], jobs: list[Job]) -> Callable[[int], str | None]:
    """The ExcNodeList of each job the agent hands over, by job id (:func:`kept_out`)."""
    names = [n.name for n in nodes]
    by_id = {j.job_id: j for j in jobs}
    return lambda job_id: kept_out(by_id[job_id], names) if job_id in by_id else None


_SIZE_KEYS = frozenset({"nodes", "gpus", "gpus_per_node"})


@functools.lru_cache(maxsize=1024)
def _request(nodes: int, gpus_per_node: int, opts: str) -> Request:
    """The request of one job shape (requests are frozen: the jobs of one shape share one object)."""
    fields = request_fields(opts, source="--comment") if opts else {}
    if clash := sorted(_SIZE_KEYS & fields.keys()):
        raise ConfigError(f"--comment: {', '.join(clash)} given in the fabric options",
                          hint="the size comes from -N and --gpus-per-node; keep only placement options "
                               "in --comment, e.g. --comment 'fabric:within=leaf'")
    return parse_model(Request, {**fields, "nodes": nodes, "gpus_per_node": gpus_per_node},
                       source="--comment", hint="example: --comment 'fabric:within=leaf'")
